package optimize

import (
	"time"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// STUB (to be replaced).
type fastKeyer struct{ engine.CanonicalKeyer }

type immutableSharer struct{}

func (immutableSharer) Store(r caudal.StepResult) caudal.StepResult { return r }
func (immutableSharer) Load(r caudal.StepResult) caudal.StepResult  { return r }

type near struct{}

func newNear(CacheConfig) *near { return &near{} }

func (n *near) Get(engine.Site, string) (caudal.StepResult, bool)         { return caudal.StepResult{}, false }
func (n *near) Set(engine.Site, string, caudal.StepResult, time.Duration) {}
func (n *near) len() int                                                  { return 0 }

func newFlight() engine.Flight { return nil }
