package optimize

import (
	"weak"

	"github.com/caudal-go/caudal"
)

// TrackedSteps returns how many steps ex's automatic optimization tracks
// (0 when it is off).
func TrackedSteps(ex *caudal.Executor) int {
	v, ok := layers.Load(weak.Make(ex))
	if !ok || v.(*layer).tuner == nil {
		return 0
	}
	t := v.(*layer).tuner
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.tracked)
}
