package optimize

import (
	"context"
	"time"

	"github.com/caudal-go/caudal/internal/engine"
)

// adaptive is STUB (to be replaced).
type adaptive struct{}

func newAdaptive(AdaptiveConfig) *adaptive { return &adaptive{} }

func (a *adaptive) Workers(_ engine.Site, limit, n int) int         { return min(limit, n) }
func (a *adaptive) Acquire(context.Context, engine.Site, int) error { return nil }
func (a *adaptive) Release(engine.Site, time.Duration, error)       {}
func (a *adaptive) Start()                                          {}
func (a *adaptive) Flush(context.Context) error                     { return nil }
func (a *adaptive) Stop() error                                     { return nil }
func (a *adaptive) limits() map[string]int                          { return nil }
func (a *adaptive) underPressure() bool                             { return false }
