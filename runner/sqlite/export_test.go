package sqlite

// Path returns the database file's path, for tests that open it behind the
// store's back.
func (s *Store) Path() string { return s.path }
