package runner

import "time"

// SetClock sets the memory store's clock.
func SetClock(s *MemoryStore, now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetRecord replaces the encoding of record seq of run id, returning the
// old one.
func SetRecord(s *MemoryStore, id string, seq int, b []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.runs[id]
	old := m.journal[seq-1]
	m.journal[seq-1] = b
	return old
}

// EditRun changes stored run id in place.
func EditRun(s *MemoryStore, id string, fn func(*Run)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.runs[id].run)
}
