package master

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// WorkerRef names a worker: its gossip Meta.ID and gRPC address.
type WorkerRef struct {
	ID   string
	Addr string
}

// IsZero reports whether r names no worker (an absent replica).
func (r WorkerRef) IsZero() bool { return r.ID == "" }

// Location is where one epoch of a partition is written.
type Location struct {
	Partition int32
	Epoch     int32
	Primary   WorkerRef
	// Replica is the zero WorkerRef when the location has no replica.
	Replica WorkerRef
}

// MapAttempt is one MapEnd report: an attempt of a map index and how many
// batches it pushed to each partition.
type MapAttempt struct {
	MapIndex int32
	Attempt  int32
	Batches  []int32
}

// State is the master's bookkeeping: applications (tokens, leases),
// their shuffles, every epoch of every partition's location, and map
// winners. It is pure: no I/O, no clock, no goroutines, no randomness of
// its own. Every mutation is one method taking one command value (the
// time, the worker view and a random seed are fields of the command), so
// that applying the same commands in the same order to two States gives
// the same result — what replicating it through raft needs. Queries do
// not mutate.
//
// A State is not safe for concurrent use; the Server serializes access.
type State struct {
	placement PlacementConfig
	apps      map[string]*app
	// deletions holds the Removals whose files are not deleted on every
	// worker yet, by ID; lastDeletion is the last ID given.
	deletions    map[uint64]*Removal
	lastDeletion uint64
}

// app is one registered application.
type app struct {
	id       string
	token    string
	expires  time.Time
	shuffles map[int32]*shuffle
}

// shuffle is one shuffle of an application.
type shuffle struct {
	id            int32
	numMaps       int32
	numPartitions int32
	noReplica     bool
	// run names the run that registered the shuffle ("" when the caller
	// gave none); see RegisterShuffle.Run.
	run string
	// epochs[p] lists partition p's locations, oldest first; the last is
	// current.
	epochs    [][]Location
	winners   map[int32]MapAttempt
	ignored   []MapAttempt
	committed bool
	// gen counts changes to the locations, so a commit can tell that a
	// Revive happened while the workers were committing.
	gen uint64
}

// NewState returns an empty State placing partitions by cfg (zero fields
// take their defaults).
func NewState(cfg PlacementConfig) *State {
	cfg.fillDefaults()
	return &State{placement: cfg, apps: make(map[string]*app), deletions: make(map[uint64]*Removal)}
}

// shuffleOf returns the shuffle of a live application.
func (s *State) shuffleOf(appID string, id int32) (*shuffle, error) {
	a, ok := s.apps[appID]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrAppNotFound, appID)
	}
	sh, ok := a.shuffles[id]
	if !ok {
		return nil, fmt.Errorf("%w: shuffle %d of %q", ErrShuffleNotFound, id, appID)
	}
	return sh, nil
}

// Authenticate checks that appID is registered, its lease has not run out
// at now, and token is its token.
func (s *State) Authenticate(appID, token string, now time.Time) error {
	a, ok := s.apps[appID]
	if !ok || !now.Before(a.expires) {
		return fmt.Errorf("%w: %q", ErrAppNotFound, appID)
	}
	if token == "" || token != a.token {
		return fmt.Errorf("%w for application %q", ErrUnauthenticated, appID)
	}
	return nil
}

// workersOf returns every worker holding any location of the shuffles,
// primary or replica, sorted by ID.
func workersOf(shuffles ...*shuffle) []WorkerRef {
	set := map[string]WorkerRef{}
	for _, sh := range shuffles {
		for _, eps := range sh.epochs {
			for _, l := range eps {
				set[l.Primary.ID] = l.Primary
				if !l.Replica.IsZero() {
					set[l.Replica.ID] = l.Replica
				}
			}
		}
	}
	return slices.SortedFunc(maps.Values(set), func(a, b WorkerRef) int { return cmp.Compare(a.ID, b.ID) })
}

// current returns the current location of every partition.
func (sh *shuffle) current() []Location {
	out := make([]Location, len(sh.epochs))
	for p, eps := range sh.epochs {
		out[p] = eps[len(eps)-1]
	}
	return out
}
