package optimize

import (
	"runtime"
	"sync"
	"weak"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/engine"
)

// seams is what the core hands an installing function.
type seams = engine.Seams[caudal.Event, caudal.StepResult]

// Use returns the option that builds an executor with the components cfg
// turns on: caudal.New(optimize.Use(cfg)). Each executor built with it
// gets components of its own. Every choice is made there, once: a
// component that is off is not consulted, and costs nothing, on any call.
// An invalid cfg (see [Config.Validate]) makes caudal.New fail with its
// errors. Use applies to caudal.New only.
func Use(cfg Config) caudal.Option {
	if err := cfg.Validate(); err != nil {
		return refuse("optimize.Use", err)
	}
	cfg.Telemetry.LatencyBuckets = cfg.Telemetry.latencyBuckets() // the caller's slice is not kept
	return install(func(s *seams) { newLayer(cfg).install(s) })
}

// install and refuse are the core's hooks (see engine.Install).
var (
	install = engine.Install.(func(func(*seams)) caudal.Option)
	refuse  = engine.Refuse.(func(string, error) caudal.Option)
)

// layer is the optimization layer of one executor.
type layer struct {
	cfg       Config
	telemetry *telemetry // nil: off, or no sink to deliver to
	adaptive  *adaptive  // nil: off
	near      *near      // nil: cache optimization off
	breakers  *breakers  // nil: no breaker (off, and not armed by the tuner)
	tuner     *tuner     // nil: automatic optimization off
}

func newLayer(cfg Config) *layer { return &layer{cfg: cfg} }

// install puts the layer's components in place of the baselines in s.
func (l *layer) install(s *seams) {
	c := &l.cfg
	if c.ObjectPool.Enabled {
		s.Alloc = newPool()
	}
	if c.ContextManager.Enabled {
		s.Strategy.Isolation = engine.CopyOnWrite{}
	}
	if c.Telemetry.Enabled && s.Recorder != nil {
		// Without a sink no event is built: there is nothing to deliver.
		l.telemetry = newTelemetry(c.Telemetry, s.Recorder)
		s.Recorder = l.telemetry
		s.Services = append(s.Services, l.telemetry)
	}
	if c.AdaptiveResourceManager.Enabled {
		l.adaptive = newAdaptive(c.AdaptiveResourceManager)
		s.Strategy.Limiter = l.adaptive
		s.Services = append(s.Services, l.adaptive)
	}
	if c.CacheOptimization.Enabled {
		l.near = newNear(c.CacheOptimization)
		s.Strategy.Keyer = newFastKeyer()
		s.Strategy.Sharer = immutableSharer{}
		s.Strategy.Near = l.near
		if !c.CacheOptimization.WithoutFlight {
			s.Strategy.Flight = newFlight()
		}
	}
	if c.ErrorHandling.Enabled {
		s.Strategy.Classifier = newClassifier(c.ErrorHandling)
	}
	if c.CircuitBreaker.Enabled {
		// After telemetry: its recorder carries the breakers' events too.
		l.breakers = newBreakers(c.CircuitBreaker, newClassifier(c.ErrorHandling), s.Recorder)
		s.Strategy.Guard = l.breakers
	}
	if c.AutomaticOptimization.Enabled {
		l.tuner = l.newTuner(s)
		s.Tuner = l.tuner
		s.Services = append(s.Services, l.tuner)
	}
	if ex, ok := s.Owner.(*caudal.Executor); ok {
		register(ex, l)
	}
}

// newTuner makes the automatic optimization of s: the components it may
// switch a step to are those of the layer, or new ones with their
// sections' knobs; those whose sections are enabled are on for every step
// already, and never switched.
func (l *layer) newTuner(s *seams) *tuner {
	c := &l.cfg
	t := newTuner(c.AutomaticOptimization, s.Recorder)
	if c.ContextManager.Enabled {
		t.fixed |= tuneCOW
	} else {
		t.cow = engine.CopyOnWrite{}
	}
	if c.AdaptiveResourceManager.Enabled {
		t.fixed |= tuneAdaptive
	} else {
		a := newAdaptive(c.AdaptiveResourceManager)
		t.limiter = a
		s.Services = append(s.Services, a)
	}
	if c.CacheOptimization.Enabled {
		t.fixed |= tuneCache
	} else {
		// Every cache step's keys and shared results are the cache
		// optimization's from its first execution, for the whole executor:
		// keys that changed when the tuner switched would lose what the
		// step's backend holds, and only cache steps consult them.
		s.Strategy.Keyer, s.Strategy.Sharer = newFastKeyer(), immutableSharer{}
		l.near = newNear(c.CacheOptimization)
		t.near = l.near
		if !c.CacheOptimization.WithoutFlight {
			t.flight = newFlight()
		}
	}
	cl := newClassifier(c.ErrorHandling)
	t.classifier = cl
	if c.ErrorHandling.Enabled {
		t.fixed |= tuneErrors
	}
	if c.CircuitBreaker.Enabled {
		t.fixed |= tuneBreaker
	} else {
		l.breakers = newBreakers(c.CircuitBreaker, cl, s.Recorder)
		t.guard = l.breakers
	}
	return t
}

// layers maps each executor built with [Use] to its layer, for [StatsOf];
// an entry goes when its executor is collected.
var layers sync.Map // weak.Pointer[caudal.Executor] → *layer

func register(ex *caudal.Executor, l *layer) {
	wp := weak.Make(ex)
	layers.Store(wp, l)
	runtime.AddCleanup(ex, func(wp weak.Pointer[caudal.Executor]) { layers.Delete(wp) }, wp)
}

// Stats is what the optimization layer of one executor reports.
type Stats struct {
	// Components are the components on, as [Config.Components] names them.
	Components []string
	// Telemetry is the telemetry's figures; zero when it is off.
	Telemetry TelemetryStats
	// Limits are the adaptive limits of the steps that have fanned out, by
	// step path; nil when the adaptive resource manager is off.
	Limits map[string]int
	// UnderPressure reports that the last reading of memory found it
	// under pressure.
	UnderPressure bool
	// CacheEntries is how many entries the in-process cache holds.
	CacheEntries int
	// Decisions is how many times the automatic optimization switched a
	// component on or off for a step; TunerPanics how many of its periods
	// panicked (contained: the steps keep their strategies).
	Decisions, TunerPanics int64
	// Tuned is the components the automatic optimization has switched on,
	// by step path, for the steps that have any on; nil when it is off.
	Tuned map[string][]string
	// Circuits is the state of the circuit breaker of each step that has
	// called its agent, by step path: "closed", "open" or "half_open"
	// (steps sharing an agent share a breaker); nil when the circuit
	// breaker is off.
	Circuits map[string]string
}

// StatsOf returns the figures of ex's optimization layer; ok is false for
// an executor not built with [Use]. It is safe to call at any time, also
// while ex executes.
func StatsOf(ex *caudal.Executor) (st Stats, ok bool) {
	v, ok := layers.Load(weak.Make(ex))
	if !ok {
		return Stats{}, false
	}
	l := v.(*layer)
	st.Components = l.cfg.Components()
	if l.telemetry != nil {
		st.Telemetry = l.telemetry.stats()
	}
	if l.adaptive != nil {
		st.Limits = l.adaptive.limits()
		st.UnderPressure = l.adaptive.underPressure()
	}
	if l.near != nil {
		st.CacheEntries = l.near.len()
	}
	if l.tuner != nil {
		st.Decisions, st.TunerPanics = l.tuner.decisions.Load(), l.tuner.panics.Load()
		st.Tuned = l.tuner.tuned()
	}
	if l.breakers != nil {
		st.Circuits = l.breakers.circuits()
	}
	return st, true
}
