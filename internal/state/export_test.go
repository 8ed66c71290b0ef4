package state

// ChainLen returns the number of frozen layers under s's own layer: the
// length of the chain a lookup that misses may walk.
func ChainLen(s *Store) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for l := s.below; l != nil; l = l.below {
		n++
	}
	return n
}

// Locked reports whether s's lock is held, for reading or writing.
func Locked(s *Store) bool {
	if !s.mu.TryLock() {
		return true
	}
	s.mu.Unlock()
	return false
}
