// Package storetest is the conformance suite of [runner.Store]: the whole
// contract of a store, stated as tests. Every store passes it:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) runner.Store {
//			s, err := mystore.Open(t.TempDir() + "/runs.db")
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// # What the suite holds a store to
//
// Beyond the method docs of [runner.Store], the suite fixes these points,
// on which every store must agree:
//
//   - Times (CreatedAt, UpdatedAt, LeaseUntil) come back equal to the
//     millisecond, or better; a zero time comes back zero.
//   - JSON documents (Input, State, FinalState, Output, the Pause's Schema
//     and Snapshot) come back byte for byte; nil comes back nil.
//   - A record comes back as its trip through encoding/json gives it
//     (Output, Write values and Metadata as their JSON forms).
//   - Get, Append, Journal, Update, Claim, Heartbeat and Delete of an
//     unknown run fail with [runner.ErrNotFound]; Create of an ID already
//     there fails and leaves the stored run alone.
//   - "owner holds the lease" means the run's Owner is owner (never ""):
//     a lease that expired can still be renewed or written under by its
//     owner until another process claims the run.
//   - Claim checks, in this order: the run exists (ErrNotFound), nobody
//     else holds a live lease (ErrRunLocked), its status is one of
//     statuses (ErrWrongStatus). Claiming a run one already holds renews
//     the lease. Claim with no statuses accepts every status.
//   - Release clears Owner and LeaseUntil (zero).
//   - Orphans are the running runs whose lease expired (a running run
//     nobody holds included), oldest CreatedAt first, ties by ID.
//   - List returns newest CreatedAt first, ties by ID descending.
//
// Leases are tested with short TTLs (tens of milliseconds) and polling,
// not long sleeps; the suite's subtests run one after another, each on a
// store of its own from open.
package storetest
