package perf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Thresholds of a busy machine: a 1-minute load average above this share
// of the CPUs, or CPU pressure above this percentage.
const (
	busyLoadPerCPU     = 0.5
	busyCPUPressurePct = 10.0
)

// loadNow reads the 1-minute load average and the CPU pressure ("some
// avg10", percent); -1 for what this system does not report.
func loadNow() (load1, cpuPressure float64) {
	load1, cpuPressure = -1, -1
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load1 = parseLoadavg(string(b))
	}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		cpuPressure = parsePressure(string(b))
	}
	return load1, cpuPressure
}

// parseLoadavg returns the first field of /proc/loadavg, or -1.
func parseLoadavg(s string) float64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil || v < 0 {
		return -1
	}
	return v
}

// parsePressure returns "avg10" of the "some" line of a pressure file
// (/proc/pressure/cpu), or -1.
func parsePressure(s string) float64 {
	for line := range strings.SplitSeq(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "some" {
			continue
		}
		for _, kv := range f[1:] {
			if v, ok := strings.CutPrefix(kv, "avg10="); ok {
				if x, err := strconv.ParseFloat(v, 64); err == nil && x >= 0 {
					return x
				}
			}
		}
	}
	return -1
}

// loadWarning returns the warning every report of a run on a busy machine
// carries, or "".
func loadWarning(l Load, cpus int) string {
	load := max(l.Load1Start, l.Load1End)
	pressure := max(l.CPUPressureStart, l.CPUPressureEnd)
	var why []string
	if cpus > 0 && load > busyLoadPerCPU*float64(cpus) {
		why = append(why, fmt.Sprintf("load average %.2f on %d CPUs", load, cpus))
	}
	if pressure > busyCPUPressurePct {
		why = append(why, fmt.Sprintf("CPU pressure %.1f%%", pressure))
	}
	if len(why) == 0 {
		return ""
	}
	return "measured on a busy machine (" + strings.Join(why, ", ") + "): figures are noisier than usual, intervals wider"
}
