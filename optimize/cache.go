package optimize

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"math/bits"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/caudal-go/caudal"
	"github.com/caudal-go/caudal/internal/deepcopy"
	"github.com/caudal-go/caudal/internal/engine"
)

// The cache optimization: a key that is a fast hash plus the canonical
// encoding itself (fastKeyer), results shared instead of deep-copied where
// no caller can change them (immutableSharer), a sharded in-process cache
// in front of each cache step's backend (near) and a flight group for
// concurrent identical misses (flight). None of it runs for a step that is
// not a cache step. BenchmarkCacheKey, BenchmarkCacheShare and
// BenchmarkNearGet measure the hot path.

// ---- keys ----

// fastKeyer is the cache optimization's [engine.Keyer]. Its key is
//
//	"ck4:" + the encoding in base64
//
// where the encoding is [engine.CanonicalKeyer]'s without its opening, of
// the step's fingerprint cut to 128 bits (see Key) — the same fingerprint,
// input and state values key alike, across processes — and the base64 is
// unpadded and URL-safe, so the key is printable ASCII text, like the
// baseline's. The key is the encoding, so two different encodings never
// share a key: no hash decides what a key stands for (a fast unseeded hash
// of the key only places it in the in-process cache and the flight group,
// which compare whole keys). The price is a key about 4/3 the encoding's
// length (some 30 bytes plus the input's size) where the baseline's is 64
// bytes. A key of a short encoding is interned in a direct-mapped table,
// read without a lock: a repeated input gets the key made for it before,
// without building or allocating it again.
type fastKeyer struct {
	// interned holds keys, each by the address of its allocation (see
	// makeKey and internedAt): a header, the key and the encoding it was
	// made from.
	interned []atomic.Pointer[byte]
}

// Bounds of a keyer's interning table.
const (
	internSlots  = 1024 // a power of two
	maxInternLen = 512  // the longest encoding interned, in bytes
)

func newFastKeyer() *fastKeyer {
	return &fastKeyer{interned: make([]atomic.Pointer[byte], internSlots)}
}

// keyPrefix opens every key fastKeyer makes.
const keyPrefix = "ck4:"

// keyHash hashes an encoding, and a key; tests swap it for one that
// collides.
var keyHash = hash64

// Key implements [engine.Keyer]. The encoding's opening (the canonical
// encoding's version: the key's prefix versions it) is left out, and of
// the step's fingerprint — a SHA-256 in hex — the key holds the first 128
// bits, as 16 bytes: they tell steps apart as surely, and keep the key
// short.
func (k *fastKeyer) Key(fingerprint string, input any, state map[string]any) (string, error) {
	var raw [fingerprintKeep / 2]byte
	if len(fingerprint) >= fingerprintKeep {
		if _, err := hex.Decode(raw[:], []byte(fingerprint[:fingerprintKeep])); err == nil {
			fingerprint = unsafe.String(&raw[0], len(raw)) // read during EncodeKey only
		}
	}
	return engine.EncodeKey(fingerprint, input, state, k.finish)
}

// fingerprintKeep is how much of a step's fingerprint a key holds: 32 hex
// digits, 128 bits.
const fingerprintKeep = 32

// finish makes the key of an encoding.
func (k *fastKeyer) finish(enc []byte) string {
	return k.intern(enc[len(engine.EncodingVersion):])
}

// intern returns the key of enc, from the table when it is there.
func (k *fastKeyer) intern(enc []byte) string {
	if len(enc) > maxInternLen {
		return fastKey(enc)
	}
	slot := &k.interned[keyHash(enc)&(internSlots-1)]
	if p := slot.Load(); p != nil {
		if key, was := internedAt(p); string(enc) == was {
			return key
		}
	}
	buf := makeKey(enc, true)
	slot.Store(&buf[0])
	key, _ := internedAt(&buf[0])
	return key
}

// internedAt returns the key and the encoding of an interned entry: an
// allocation of makeKey, at p.
func internedAt(p *byte) (key, enc string) {
	hdr := unsafe.Slice(p, keyHeader)
	n, m := binary.NativeEndian.Uint32(hdr), binary.NativeEndian.Uint32(hdr[4:])
	base := unsafe.Add(unsafe.Pointer(p), keyHeader)
	return unsafe.String((*byte)(base), int(n)), unsafe.String((*byte)(unsafe.Add(base, n)), int(m))
}

// fastKey makes the key of an encoding, in one allocation.
func fastKey(enc []byte) string {
	buf := makeKey(enc, false)
	key, _ := internedAt(&buf[0])
	return key
}

// makeKey makes, in one allocation, the key of an encoding after a header
// of its length and the length of the encoding, and followed by the
// encoding itself when withEnc is set (an interned entry compares
// encodings with it; internedAt reads the parts back).
func makeKey(enc []byte, withEnc bool) []byte {
	n := len(keyPrefix) + keyText.EncodedLen(len(enc))
	m := 0
	if withEnc {
		m = len(enc)
	}
	buf := make([]byte, keyHeader+n+m)
	binary.NativeEndian.PutUint32(buf, uint32(n))
	binary.NativeEndian.PutUint32(buf[4:], uint32(m))
	b := buf[keyHeader:]
	copy(b, keyPrefix)
	keyText.Encode(b[len(keyPrefix):n], enc)
	copy(b[n:], enc[:m])
	return buf // never written again
}

// keyText writes an encoding into a key as text: unpadded URL-safe
// base64, four characters for three bytes, without a branch per byte.
var keyText = base64.RawURLEncoding

// keyHeader is the size of the two lengths (32 bits each: an encoding is
// at most maxInternLen long, or not interned) before a key's bytes.
const keyHeader = 8

// hashOfKey returns the hash of a key, by which the near cache and the
// flight group place it.
func hashOfKey(key string) uint64 {
	return keyHash(unsafe.Slice(unsafe.StringData(key), len(key)))
}

// golden is 2⁶⁴ over the golden ratio: a multiplication by it spreads a
// number's bits over the word (Fibonacci hashing).
const golden = 0x9E3779B97F4A7C15

// Constants of hash64 (wyhash's).
const (
	hashK0 = 0xa0761d6478bd642f
	hashK1 = 0xe7037ed1a0b428db
	hashK2 = 0x8ebc6af09c88c6e3
)

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash64 is a fast, unseeded 64-bit hash in the manner of wyhash: the same
// bytes hash alike in every process. It is not a defence against chosen
// collisions, which only cost probes: keys are compared whole.
func hash64(b []byte) uint64 {
	h := uint64(len(b)) ^ hashK2
	for len(b) >= 16 {
		h = mix(binary.LittleEndian.Uint64(b)^hashK0^h, binary.LittleEndian.Uint64(b[8:])^hashK1)
		b = b[16:]
	}
	var t [16]byte
	copy(t[:], b)
	h = mix(binary.LittleEndian.Uint64(t[:])^hashK0^h, binary.LittleEndian.Uint64(t[8:])^hashK1^uint64(len(b)))
	return mix(h^hashK0, hashK2)
}

// ---- sharing ----

// immutableSharer is the cache optimization's [engine.Sharer]: a result
// crosses the cache boundary as a copy of its mutable parts only. What no
// caller can change — strings, numbers, booleans, times, json.Number,
// structs and arrays of those (a type's verdict is computed once) — is
// shared as is, at any depth: a []any of such values is copied with one
// slices.Clone, a map[string]any entry by assignment. A mutable value of
// another type (a pointer, a []byte, a struct with a slice) is copied as
// the baseline copies it (deepcopy, Clone methods included). The Metadata
// map and the Children slice are always fresh: the core writes to a hit's
// metadata. So no caller can mutate what another reads, and a hit whose
// output is immutable costs no copy of it at all.
type immutableSharer struct{}

// Store implements [engine.Sharer].
func (immutableSharer) Store(r caudal.StepResult) caudal.StepResult { return shareResult(r) }

// Load implements [engine.Sharer].
func (immutableSharer) Load(r caudal.StepResult) caudal.StepResult { return shareResult(r) }

func shareResult(r caudal.StepResult) caudal.StepResult {
	r.Output = shareValue(r.Output)
	if r.Metadata != nil {
		r.Metadata = shareMapTop(r.Metadata)
	}
	if r.Children != nil {
		kids := make([]caudal.StepResult, len(r.Children))
		for i, c := range r.Children {
			kids[i] = shareResult(c)
		}
		r.Children = kids
	}
	return r
}

// maxShareDepth is the nesting past which the sharer leaves the copy to
// deepcopy, which handles cycles.
const maxShareDepth = 256

// errTooDeep aborts a share that nests too deep.
var errTooDeep = errors.New("too deep")

// shareValue returns v, or a copy of v sharing its immutable parts.
func shareValue(v any) any {
	out, _, err := share(v, 0)
	if err != nil {
		return deepcopy.Copy(v)
	}
	return out
}

// shareMapTop is shareValue for a map[string]any.
func shareMapTop(m map[string]any) map[string]any {
	out, err := shareMap(m, 0)
	if err != nil {
		return deepcopy.CopyMap(m)
	}
	return out
}

// share returns v, or a copy of v sharing its immutable parts; copied
// reports a copy.
func share(v any, depth int) (out any, copied bool, err error) {
	if scalar(v) {
		return v, false, nil
	}
	switch x := v.(type) {
	case bool, float32, int32, uint, uint64, uint32,
		int8, int16, uint8, uint16, uintptr, complex64, complex128,
		time.Time, time.Duration:
		return v, false, nil
	case map[string]any:
		if x == nil {
			return v, false, nil
		}
		m, err := shareMap(x, depth)
		return m, true, err
	case []any:
		s, err := shareSlice(x, depth)
		return s, true, err
	case []string:
		return slices.Clone(x), true, nil
	case map[string]string:
		return maps.Clone(x), true, nil
	case []byte:
		return slices.Clone(x), true, nil
	}
	if immutableType(reflect.TypeOf(v)) {
		return v, false, nil
	}
	return deepcopy.Copy(v), true, nil
}

// shareMap clones m whole (the runtime copies its table as is) and
// replaces the values that need a copy of their own.
func shareMap(m map[string]any, depth int) (map[string]any, error) {
	if depth > maxShareDepth {
		return nil, errTooDeep
	}
	out := maps.Clone(m)
	for k, x := range m {
		if scalar(x) {
			continue
		}
		y, copied, err := share(x, depth+1)
		if err != nil {
			return nil, err
		}
		if copied {
			out[k] = y
		}
	}
	return out, nil
}

// shareSlice clones s whole and replaces the elements that need a copy
// of their own.
func shareSlice(s []any, depth int) ([]any, error) {
	if s == nil {
		return nil, nil
	}
	if depth > maxShareDepth {
		return nil, errTooDeep
	}
	out := slices.Clone(s)
	for i, x := range s {
		if scalar(x) {
			continue
		}
		y, copied, err := share(x, depth+1)
		if err != nil {
			return nil, err
		}
		if copied {
			out[i] = y
		}
	}
	return out, nil
}

// scalar reports whether x is of one of the immutable types JSON decodes
// into: the quick test, one comparison of a type word each.
func scalar(x any) bool {
	if x == nil {
		return true
	}
	if _, ok := x.(float64); ok {
		return true
	}
	if _, ok := x.(string); ok {
		return true
	}
	if _, ok := x.(bool); ok {
		return true
	}
	if _, ok := x.(json.Number); ok {
		return true
	}
	if _, ok := x.(int); ok {
		return true
	}
	_, ok := x.(int64)
	return ok
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	clonerType = reflect.TypeFor[deepcopy.Cloner]()
)

// immutables caches immutableType's verdicts.
var immutables sync.Map // reflect.Type → bool

// immutableType reports whether no holder of a value of type t can change
// it, nor anything it reaches, nor would the baseline copy do anything but
// assign it: booleans, numbers, strings, time.Time, and arrays and structs
// (all fields, unexported ones too) of those, none with a Clone method.
func immutableType(t reflect.Type) bool {
	if v, ok := immutables.Load(t); ok {
		return v.(bool)
	}
	ok := newImmutableType(t)
	immutables.Store(t, ok)
	return ok
}

func newImmutableType(t reflect.Type) bool {
	if t == timeType {
		return true
	}
	if t.Implements(clonerType) || reflect.PointerTo(t).Implements(clonerType) {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return immutableType(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !immutableType(t.Field(i).Type) {
				return false
			}
		}
		return true
	}
	return false // pointers, maps, slices, interfaces, chans, funcs
}

// ---- copy plans ----

// resultPlan is how to copy a stored result for a caller, decided once
// when the near cache takes it: which parts of its output and metadata
// are mutable and need a copy of their own, the rest shared. The entry's
// result never changes (the sharer's Store made it private), so the plan
// stays right for its life. A hit then clones the mutable containers only,
// without inspecting their elements again.
type resultPlan struct {
	output copyPlan
	meta   copyPlan
	kids   []resultPlan
}

// planKind says how a value is copied.
type planKind uint8

const (
	planShare planKind = iota // immutable: handed out as is
	planMap                   // a map[string]any: cloned, then the values in keys copied by their plans
	planSlice                 // a []any: cloned, then the elements at idx copied by their plans
	planClone                 // a []string, []byte or map[string]string: cloned
	planDeep                  // anything else mutable: the baseline's deep copy
)

// copyPlan is the plan of one value.
type copyPlan struct {
	kind  planKind
	elems []planElem // planMap, planSlice: the mutable values and their plans
}

// planElem is a mutable value of a map (at key) or a slice (at idx).
type planElem struct {
	key  string
	idx  int
	plan copyPlan
}

func planResult(r caudal.StepResult) resultPlan {
	p := resultPlan{output: planValue(r.Output, 0)}
	if r.Metadata != nil {
		p.meta = planValue(r.Metadata, 0)
	}
	if r.Children != nil {
		p.kids = make([]resultPlan, len(r.Children))
		for i, c := range r.Children {
			p.kids[i] = planResult(c)
		}
	}
	return p
}

// load copies r for a caller by p. The metadata map and the children are
// always fresh: the core writes to a hit's metadata.
func (p *resultPlan) load(r caudal.StepResult) caudal.StepResult {
	r.Output = p.output.apply(r.Output)
	if r.Metadata != nil {
		r.Metadata = p.meta.apply(r.Metadata).(map[string]any)
	}
	if r.Children != nil {
		kids := make([]caudal.StepResult, len(r.Children))
		for i, c := range r.Children {
			kids[i] = p.kids[i].load(c)
		}
		r.Children = kids
	}
	return r
}

// planValue plans the copy of v.
func planValue(v any, depth int) copyPlan {
	if scalar(v) {
		return copyPlan{}
	}
	if depth > maxShareDepth {
		return copyPlan{kind: planDeep} // deepcopy handles cycles
	}
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return copyPlan{}
		}
		p := copyPlan{kind: planMap}
		for k, e := range x {
			if sub := planValue(e, depth+1); sub.kind != planShare {
				p.elems = append(p.elems, planElem{key: k, plan: sub})
			}
		}
		return p
	case []any:
		if x == nil {
			return copyPlan{}
		}
		p := copyPlan{kind: planSlice}
		for i, e := range x {
			if sub := planValue(e, depth+1); sub.kind != planShare {
				p.elems = append(p.elems, planElem{idx: i, plan: sub})
			}
		}
		return p
	case []string, []byte, map[string]string:
		return copyPlan{kind: planClone}
	}
	if immutableType(reflect.TypeOf(v)) {
		return copyPlan{}
	}
	return copyPlan{kind: planDeep}
}

// apply copies v, the value p was made from, by p.
func (p *copyPlan) apply(v any) any {
	switch p.kind {
	case planMap:
		m := v.(map[string]any)
		out := maps.Clone(m)
		for i := range p.elems {
			e := &p.elems[i]
			out[e.key] = e.plan.apply(m[e.key])
		}
		return out
	case planSlice:
		s := v.([]any)
		out := slices.Clone(s)
		for i := range p.elems {
			e := &p.elems[i]
			out[e.idx] = e.plan.apply(s[e.idx])
		}
		return out
	case planClone:
		switch x := v.(type) {
		case []string:
			return slices.Clone(x)
		case []byte:
			return slices.Clone(x)
		case map[string]string:
			return maps.Clone(x)
		}
	case planDeep:
		return deepcopy.Copy(v)
	}
	return v
}

// ---- the near cache ----

// near is the in-process cache in front of the cache steps' backends
// ([engine.Near]): shards picked by the key's hash, each an open-addressing
// table read without a lock (an atomic load per probed slot) and written
// under the shard's mutex, evicting by CLOCK (a hit marks its entry; the
// hand spares a marked entry once) when the shard is full. An entry is
// served until its TTL — the least of the configured one and the step's —
// runs out, counted from Set; an expired entry is not served and goes when
// the hand reaches it. Safe for concurrent use.
type near struct {
	entries atomic.Int64 // over all shards; an empty cache answers without a probe
	shards  []nearShard
	shift   uint // a hash's shard is hash >> shift
	ttl     time.Duration
	door    doorkeeper
}

// doorkeeper remembers, in a bitset, the keys offered to the near cache
// once: a key is admitted the second time. When an eighth of its bits
// were set since it was last cleared, it clears them all (a key offered
// again later waits one more offer). Marks racing a clear may be lost:
// that only delays an admission. Safe for concurrent use; no lock.
type doorkeeper struct {
	bits  []atomic.Uint64
	mask  uint64 // of a bit index
	marks atomic.Int64
}

func (d *doorkeeper) init(capacity int) {
	n := ceilPow2(max(64*capacity, 1<<12)) // bits
	d.bits = make([]atomic.Uint64, n/64)
	d.mask = uint64(n - 1)
}

// bitsOf returns the two bits of the key of hash h: words and masks.
func (d *doorkeeper) bitsOf(h uint64) (wi *atomic.Uint64, bi uint64, wj *atomic.Uint64, bj uint64) {
	i, j := (h>>17^h)&d.mask, (h>>41^h*golden)&d.mask // not the bits that pick the shard
	return &d.bits[i/64], uint64(1) << (i % 64), &d.bits[j/64], uint64(1) << (j % 64)
}

// offered reports whether the key of hash h may have been offered since
// the doorkeeper was last cleared: a key it answers false for is not in
// the near cache unless it was taken before that clear.
func (d *doorkeeper) offered(h uint64) bool {
	wi, bi, wj, bj := d.bitsOf(h)
	return wi.Load()&bi != 0 && wj.Load()&bj != 0
}

// admit reports whether the key of hash h was offered before, and marks
// it when it was not. A key is two bits (a Bloom filter of two hashes),
// and the filter is cleared once an eighth of its bits are set: a key
// offered once passes for one offered twice about once in 300 times.
func (d *doorkeeper) admit(h uint64) bool {
	wi, bi, wj, bj := d.bitsOf(h)
	if wi.Load()&bi != 0 && wj.Load()&bj != 0 {
		return true
	}
	wi.Or(bi)
	wj.Or(bj)
	if d.marks.Add(2) > int64(d.mask+1)/8 {
		d.marks.Store(0)
		for k := range d.bits {
			d.bits[k].Store(0)
		}
	}
	return false
}

// nearShard is one shard of a near cache.
type nearShard struct {
	tab  atomic.Pointer[nearTable]
	near *near // the cache's entry count

	mu         sync.Mutex // protects the writes to tab's slots, and live, dead, hand
	capacity   int        // the most live entries
	live, dead int        // entries in tab, and slots of entries gone
	hand       int        // the CLOCK hand: a slot of tab

	_ [64]byte // keeps shards apart in memory
}

// nearTable is a shard's table: a power of two of slots, at least a
// quarter of them never used, so that a probe always ends.
type nearTable struct {
	slots []nearSlot
	mask  uint64
}

// nearSlot is a slot of a nearTable: its entry, and the entry's tag, so
// that a probe passes the entries of other keys without reading them (a
// lookup that misses in a full table reads a few adjacent slots, not a
// few entries scattered over the heap). A writer stores the entry before
// the tag; a reader that matches a tag checks the entry it then loads.
type nearSlot struct {
	tag atomic.Uint64 // 0: never used (a probe ends here); deadTag: its entry went; else tagOf the entry's hash
	e   atomic.Pointer[nearEntry]
}

// deadTag is the tag of a slot whose entry went: a probe goes on past it.
// It is even, and tagOf odd: no lookup matches it.
const deadTag = 2

// tagOf returns the tag of an entry of hash h: never 0 nor deadTag.
func tagOf(h uint64) uint64 { return h | 1 }

// nearEntry is a cached result; immutable once published, but for used.
type nearEntry struct {
	hash     uint64
	step     uint64 // the step's Site.ID: an entry does not keep the step alive
	key      string
	r        caudal.StepResult // private to the entry: only copies by plan go out
	plan     resultPlan
	deadline int64 // on the executor's monotonic clock, in ns
	used     atomic.Bool
}

func newNear(cfg CacheConfig) *near {
	n, capacity := cfg.shards(), cfg.capacity()
	nr := &near{
		shards: make([]nearShard, n),
		shift:  uint(64 - bits.TrailingZeros(uint(n))),
		ttl:    cfg.ttl(),
	}
	nr.door.init(capacity)
	for i := range nr.shards {
		s := &nr.shards[i]
		s.near = nr
		s.capacity = capacity / n
		if i < capacity%n {
			s.capacity++
		}
		s.tab.Store(newNearTable(s.capacity))
	}
	return nr
}

func newNearTable(capacity int) *nearTable {
	size := max(8, ceilPow2(2*capacity))
	return &nearTable{slots: make([]nearSlot, size), mask: uint64(size - 1)}
}

func (n *near) shard(h uint64) *nearShard { return &n.shards[h>>n.shift] }

// nearHash places the entry of key for site: the key's hash mixed with the
// step's ID, so that the entries of one key for many steps — the builds of
// a pipeline rebuilt per request, most of them gone — spread over the
// table instead of making one long run that every lookup of the key walks.
func nearHash(site engine.Site, key string) uint64 {
	return hashOfKey(key) ^ site.ID*golden
}

// Get implements [engine.Near]: the result is copied for the caller by
// the plan made when the entry was set.
func (n *near) Get(site engine.Site, key string, now time.Duration) (caudal.StepResult, bool) {
	if n.entries.Load() == 0 {
		return caudal.StepResult{}, false // nothing was admitted: inputs seen once, say
	}
	h := nearHash(site, key)
	if !n.door.offered(h) {
		// Never offered since the doorkeeper's last clear: a fresh key
		// misses without a probe. (An entry taken before the clear is
		// missed until its next offer: one more trip to the backend.)
		return caudal.StepResult{}, false
	}
	tag := tagOf(h)
	t := n.shard(h).tab.Load()
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		switch sl.tag.Load() {
		case 0:
			return caudal.StepResult{}, false
		case tag:
		default:
			continue
		}
		e := sl.e.Load()
		if e == nil || e.hash != h || e.key != key || e.step != site.ID {
			continue
		}
		if int64(now) >= e.deadline {
			return caudal.StepResult{}, false
		}
		if !e.used.Load() {
			e.used.Store(true)
		}
		return e.plan.load(e.r), true
	}
}

// Set implements [engine.Near]: it takes a result the second time it is
// offered (the core offers what the backend answers hits with), so that
// inputs seen once or twice — the common case of fresh inputs — cost the
// near cache nothing but a bit in its doorkeeper.
func (n *near) Set(site engine.Site, key string, r caudal.StepResult, ttl, now time.Duration) {
	h := nearHash(site, key)
	if !n.door.admit(h) { // a rebuilt step is another step: its entries start over
		return
	}
	if ttl <= 0 || ttl > n.ttl {
		ttl = n.ttl
	}
	e := &nearEntry{hash: h, step: site.ID, key: key, r: r, plan: planResult(r), deadline: int64(now + ttl)}
	s := n.shard(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(e, int64(now))
}

// put stores e in s, in place of an entry of the same site and key.
func (s *nearShard) put(e *nearEntry, now int64) {
	t := s.tab.Load()
	tag := tagOf(e.hash)
	free := -1 // the first slot on the probe whose entry went
	i := e.hash & t.mask
	for ; ; i = (i + 1) & t.mask {
		sl := &t.slots[i]
		switch sl.tag.Load() {
		case 0:
		case deadTag:
			if free < 0 {
				free = int(i)
			}
			continue
		case tag:
			if old := sl.e.Load(); old.hash == e.hash && old.key == e.key && old.step == e.step {
				sl.e.Store(e)
				return
			}
			continue
		default:
			continue
		}
		break
	}
	if s.live >= s.capacity {
		s.evict(t, now)
	}
	if free >= 0 {
		i = uint64(free)
		s.dead--
	}
	t.slots[i].e.Store(e)
	t.slots[i].tag.Store(tag)
	s.live++
	s.near.entries.Add(1)
	if 4*(s.live+s.dead) >= 3*len(t.slots) {
		s.rebuild(t)
	}
}

// evict makes room for an entry: the hand removes the first expired or
// unmarked entry it meets, unmarking the marked ones it passes.
func (s *nearShard) evict(t *nearTable, now int64) {
	for range 2*len(t.slots) + 1 {
		sl := &t.slots[s.hand]
		s.hand = (s.hand + 1) & int(t.mask)
		if tag := sl.tag.Load(); tag == 0 || tag == deadTag {
			continue
		}
		e := sl.e.Load()
		if e.used.Load() && now < e.deadline {
			e.used.Store(false)
			continue
		}
		sl.tag.Store(deadTag)
		sl.e.Store(nil)
		s.live--
		s.near.entries.Add(-1)
		s.dead++
		return
	}
}

// rebuild replaces t with a table of its live entries, without the slots
// of entries gone; readers still probing t finish there.
func (s *nearShard) rebuild(t *nearTable) {
	nt := newNearTable(s.capacity)
	for i := range t.slots {
		sl := &t.slots[i]
		if tag := sl.tag.Load(); tag == 0 || tag == deadTag {
			continue
		}
		e := sl.e.Load()
		j := e.hash & nt.mask
		for nt.slots[j].tag.Load() != 0 {
			j = (j + 1) & nt.mask
		}
		nt.slots[j].e.Store(e)
		nt.slots[j].tag.Store(tagOf(e.hash))
	}
	s.dead, s.hand = 0, 0
	s.tab.Store(nt)
}

// len returns the number of entries, expired ones not yet evicted
// included.
func (n *near) len() int {
	total := 0
	for i := range n.shards {
		s := &n.shards[i]
		s.mu.Lock()
		total += s.live
		s.mu.Unlock()
	}
	return total
}

// ---- the flight group ----

// flight is the cache optimization's [engine.Flight]: the first execution
// to miss on a (step, key) runs the step, on its own goroutine and under
// its own context; the others wait for its outcome and share it. A waiter
// whose context ends stops waiting and returns its context's cause; the
// leader runs on. When the leader fails for reasons of its own — its
// context ended, its run's usage limit was reached, it paused — the
// waiters do not inherit that: one of them runs the step in turn. A panic
// in the step becomes a *caudal.PanicError, for the leader and the waiters
// alike. Safe for concurrent use.
type flight struct {
	shards [flightShards]flightShard // a key's is picked by its hash's top bits
}

// flightShards is the number of shards of a flight group: misses on
// different keys rarely share a lock.
const flightShards = 16

// flightShard is one shard of a flight group. Its calls are the misses in
// flight, few at any moment: a slice searched from the end costs less than
// a map's hashing of a long key.
type flightShard struct {
	mu    sync.Mutex // protects calls
	calls []*flightCall
	_     [32]byte // keeps shards apart in memory
}

// flightCall is a run of a step that waiters wait for.
type flightCall struct {
	step  uint64        // the step's Site.ID
	key   string        // the miss's key
	done  chan struct{} // made by the first waiter (under the shard's mu), closed once the fields below are set
	v     any
	err   error
	again bool // the leader failed for reasons of its own: run again
}

func newFlight() engine.Flight { return &flight{} }

// calls recycles the flightCalls of misses no one waited for: once the
// leader removed such a call from its shard, nobody else can hold it.
var calls = sync.Pool{New: func() any { return new(flightCall) }}

// find returns the call of step and key in flight, or nil.
func (sh *flightShard) find(step uint64, key string) *flightCall {
	for i := len(sh.calls) - 1; i >= 0; i-- {
		if c := sh.calls[i]; c.step == step && c.key == key {
			return c
		}
	}
	return nil
}

// Do implements [engine.Flight].
func (f *flight) Do(ctx context.Context, site engine.Site, key string, fn func() (any, error)) (any, error, bool) {
	sh := &f.shards[hashOfKey(key)>>60%flightShards]
	for {
		sh.mu.Lock()
		c := sh.find(site.ID, key)
		if c == nil {
			c = calls.Get().(*flightCall)
			c.step, c.key = site.ID, key
			sh.calls = append(sh.calls, c)
			sh.mu.Unlock()
			waited := sh.lead(ctx, site, c, fn)
			v, err := c.v, c.err
			if !waited {
				*c = flightCall{}
				calls.Put(c)
			}
			return v, err, false
		}
		if c.done == nil {
			c.done = make(chan struct{}) // a miss no one waits for makes none
		}
		done := c.done
		sh.mu.Unlock()
		select {
		case <-done:
			if c.again {
				continue
			}
			return c.v, c.err, true
		case <-ctx.Done():
			return nil, context.Cause(ctx), true
		}
	}
}

// remove takes c out of the calls in flight.
func (sh *flightShard) remove(c *flightCall) {
	for i, x := range sh.calls {
		if x == c {
			last := len(sh.calls) - 1
			sh.calls[i] = sh.calls[last]
			sh.calls[last] = nil
			sh.calls = sh.calls[:last]
			return
		}
	}
}

// lead runs fn for c's waiters, then releases them; waited reports that
// there were some (c is theirs too).
func (sh *flightShard) lead(ctx context.Context, site engine.Site, c *flightCall, fn func() (any, error)) (waited bool) {
	defer func() {
		if x := recover(); x != nil {
			c.v, c.err = nil, &caudal.PanicError{Step: site.Path, Value: x, Stack: debug.Stack()}
		}
		c.again = c.err != nil && (ctx.Err() != nil || errors.Is(c.err, caudal.ErrPaused) ||
			errors.Is(c.err, caudal.ErrUsageLimitExceeded))
		sh.mu.Lock()
		sh.remove(c)
		done := c.done
		sh.mu.Unlock()
		if done != nil {
			close(done)
		}
		waited = done != nil
	}()
	c.v, c.err = fn()
	return false // set by the deferred func
}
