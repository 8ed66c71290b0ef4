package optimize

import (
	"sync"
	"sync/atomic"

	"github.com/caudal-go/caudal/internal/engine"
)

// pool is the object pool: an [engine.Allocator] with a sync.Pool per
// class of object. The core resets an object before it puts it back and
// never puts back what its caller keeps. Safe for concurrent use.
type pool struct {
	classes atomic.Pointer[[]classPool] // copied on write: classes are few
	mu      sync.Mutex                  // serializes additions to classes
}

// classPool is the pool of one class.
type classPool struct {
	class *engine.Class
	pool  *sync.Pool
}

func newPool() *pool {
	p := &pool{}
	p.classes.Store(&[]classPool{})
	return p
}

// Get implements [engine.Allocator].
func (p *pool) Get(c *engine.Class) any { return p.of(c).Get() }

// Put implements [engine.Allocator].
func (p *pool) Put(c *engine.Class, v any) { p.of(c).Put(v) }

// of returns c's pool, making it on first use.
func (p *pool) of(c *engine.Class) *sync.Pool {
	for _, cp := range *p.classes.Load() {
		if cp.class == c {
			return cp.pool
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.classes.Load()
	for _, cp := range cur {
		if cp.class == c {
			return cp.pool
		}
	}
	sp := &sync.Pool{New: c.New}
	next := append(cur[:len(cur):len(cur)], classPool{class: c, pool: sp})
	p.classes.Store(&next)
	return sp
}
