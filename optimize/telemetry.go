package optimize

import (
	"context"
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// TelemetryStats are the telemetry's figures.
type TelemetryStats struct {
	Recorded  uint64    // events taken into the ring
	Delivered uint64    // events handed to the sinks
	Dropped   uint64    // events dropped because the ring was full
	Latency   Histogram // the latency of finished steps
}

// Histogram is a fixed-bucket histogram: Counts[i] counts the values in
// (Bounds[i-1], Bounds[i]]; the last count, one past Bounds, those above
// every bound.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
}

// telemetry is STUB: synchronous delivery (to be replaced).
type telemetry struct {
	next engine.Recorder[caudal.Event]
}

func newTelemetry(_ TelemetryConfig, next engine.Recorder[caudal.Event]) *telemetry {
	return &telemetry{next: next}
}

func (t *telemetry) Record(ctx context.Context, e *caudal.Event) { t.next.Record(ctx, e) }
func (t *telemetry) Start()                                      {}
func (t *telemetry) Flush(context.Context) error                 { return nil }
func (t *telemetry) Stop() error                                 { return nil }
func (t *telemetry) stats() TelemetryStats                       { return TelemetryStats{} }
