package master

import (
	"fmt"
	"maps"
	"slices"

	"basalt/rss/gossip"
)

// Limits of a shuffle's shape.
const (
	MaxPartitions = 1 << 20
	MaxMaps       = 1 << 24
)

// RegisterShuffle places every partition of a new shuffle.
type RegisterShuffle struct {
	App           string
	Shuffle       int32
	NumMaps       int32
	NumPartitions int32
	// NoReplica keeps a single copy of each partition.
	NoReplica bool
	// Run, when not empty, names the run of the producer that writes the
	// shuffle (the Spark plugin names the map stage's run, "stage S
	// attempt A"): registering an existing shuffle with another Run
	// fails with ErrShuffleExists, so a rerun of a map stage claims a new
	// shuffle id instead of writing into one another run wrote (and maybe
	// committed). Empty: no check.
	Run string
	// Workers is the live membership to place on (non-workers,
	// decommissioning workers and full workers are skipped).
	Workers []gossip.Meta
	// Seed seeds the random choice among equally good workers.
	Seed uint64
}

// Layout is the current location of every partition of a shuffle.
type Layout struct {
	// Locations[p] is partition p's current location.
	Locations []Location
	// Created is false when the shuffle already existed with this shape.
	Created bool
}

// RegisterShuffle applies c. Registering an existing shuffle again with
// the same shape (and Run, when c has one) returns its current layout;
// another shape or Run fails with ErrShuffleExists. Each partition gets a
// primary and, unless NoReplica, a replica on a worker with another ID;
// when no such worker exists the partition has no replica (see
// Unreplicated). No usable worker at all fails with ErrNoWorkers.
func (s *State) RegisterShuffle(c RegisterShuffle) (Layout, error) {
	if err := checkShape(c); err != nil {
		return Layout{}, err
	}
	a, ok := s.apps[c.App]
	if !ok {
		return Layout{}, fmt.Errorf("%w: %q", ErrAppNotFound, c.App)
	}
	if sh, ok := a.shuffles[c.Shuffle]; ok {
		if err := sh.sameAs(c); err != nil {
			return Layout{}, err
		}
		return Layout{Locations: sh.current()}, nil
	}
	sh, err := s.place(c)
	if err != nil {
		return Layout{}, err
	}
	a.shuffles[c.Shuffle] = sh
	return Layout{Locations: sh.current(), Created: true}, nil
}

// sameAs returns ErrShuffleExists unless registering c again is a no-op
// for sh: same shape and, when c names a run, the same run.
func (sh *shuffle) sameAs(c RegisterShuffle) error {
	if sh.numMaps != c.NumMaps || sh.numPartitions != c.NumPartitions || sh.noReplica != c.NoReplica {
		return fmt.Errorf("%w: shuffle %d of %q has %d maps, %d partitions, no_replica %v",
			ErrShuffleExists, c.Shuffle, c.App, sh.numMaps, sh.numPartitions, sh.noReplica)
	}
	if c.Run != "" && c.Run != sh.run {
		return fmt.Errorf("%w: shuffle %d of %q belongs to run %q, not %q", ErrShuffleExists, c.Shuffle, c.App, sh.run, c.Run)
	}
	return nil
}

// Registered returns the layout of c's shuffle when registering c would
// change nothing (the shuffle exists with c's shape and run), so a server
// can answer a repeated registration from a read; ok is false when c must
// be applied (to create the shuffle or to fail).
func (s *State) Registered(c RegisterShuffle) (layout Layout, ok bool) {
	sh, err := s.shuffleOf(c.App, c.Shuffle)
	if err != nil || sh.sameAs(c) != nil {
		return Layout{}, false
	}
	return Layout{Locations: sh.current()}, true
}

// checkShape validates a RegisterShuffle's numbers.
func checkShape(c RegisterShuffle) error {
	switch {
	case c.Shuffle < 0:
		return fmt.Errorf("%w: negative shuffle id %d", ErrInvalidArgument, c.Shuffle)
	case c.NumPartitions < 1 || c.NumPartitions > MaxPartitions:
		return fmt.Errorf("%w: %d partitions, want 1 to %d", ErrInvalidArgument, c.NumPartitions, MaxPartitions)
	case c.NumMaps < 0 || c.NumMaps > MaxMaps:
		return fmt.Errorf("%w: %d maps, want 0 to %d", ErrInvalidArgument, c.NumMaps, MaxMaps)
	}
	return nil
}

// place builds a new shuffle with every partition placed at epoch 0.
func (s *State) place(c RegisterShuffle) (*shuffle, error) {
	p := newPlacer(s.placement, c.Workers, s.openPartitions(), c.Seed)
	sh := &shuffle{
		id: c.Shuffle, numMaps: c.NumMaps, numPartitions: c.NumPartitions, noReplica: c.NoReplica, run: c.Run,
		epochs: make([][]Location, c.NumPartitions), winners: make(map[int32]MapAttempt),
	}
	for part := range c.NumPartitions {
		loc := Location{Partition: part}
		var ok bool
		if loc.Primary, ok = p.pickPrimary(nil); !ok {
			return nil, fmt.Errorf("%w: %v", ErrNoWorkers, p.stats)
		}
		if !c.NoReplica {
			loc.Replica, _ = p.pickReplica([]string{loc.Primary.ID})
		}
		sh.epochs[part] = []Location{loc}
	}
	return sh, nil
}

// openPartitions counts, per worker ID, the current locations (primary or
// replica) of every uncommitted shuffle.
func (s *State) openPartitions() map[string]int {
	n := map[string]int{}
	for _, a := range s.apps {
		for _, sh := range a.shuffles {
			if sh.committed {
				continue
			}
			for _, l := range sh.current() {
				n[l.Primary.ID]++
				if !l.Replica.IsZero() {
					n[l.Replica.ID]++
				}
			}
		}
	}
	return n
}

// Unreplicated returns how many of locs have no replica.
func Unreplicated(locs []Location) int {
	n := 0
	for _, l := range locs {
		if l.Replica.IsZero() {
			n++
		}
	}
	return n
}

// Revive gives a partition a new epoch after a push to FailedEpoch
// failed.
type Revive struct {
	App         string
	Shuffle     int32
	Partition   int32
	FailedEpoch int32
	Workers     []gossip.Meta
	Seed        uint64
}

// Revive applies c. When the partition's current epoch is newer than
// FailedEpoch it is returned unchanged (another writer revived it
// already). Otherwise the partition gets epoch FailedEpoch+1 on a primary
// other than the failed location's primary and replica where possible
// (else other than its primary, else anywhere), and a replica other than
// the new primary and, where possible, the failed pair. A committed
// shuffle fails with ErrCommitted; an epoch never given out with
// ErrInvalidArgument.
func (s *State) Revive(c Revive) (Location, error) {
	sh, err := s.shuffleOf(c.App, c.Shuffle)
	if err != nil {
		return Location{}, err
	}
	if c.Partition < 0 || c.Partition >= sh.numPartitions {
		return Location{}, fmt.Errorf("%w: partition %d of shuffle %d (%d partitions)", ErrPartitionNotFound, c.Partition, c.Shuffle, sh.numPartitions)
	}
	if sh.committed {
		return Location{}, fmt.Errorf("%w: shuffle %d of %q", ErrCommitted, c.Shuffle, c.App)
	}
	eps := sh.epochs[c.Partition]
	cur := eps[len(eps)-1]
	switch {
	case c.FailedEpoch > cur.Epoch || c.FailedEpoch < 0:
		return Location{}, fmt.Errorf("%w: epoch %d of partition %d was never given out (current %d)", ErrInvalidArgument, c.FailedEpoch, c.Partition, cur.Epoch)
	case c.FailedEpoch < cur.Epoch:
		return cur, nil
	}
	loc, err := s.replace(sh, cur, c)
	if err != nil {
		return Location{}, err
	}
	sh.epochs[c.Partition] = append(eps, loc)
	sh.gen++
	return loc, nil
}

// replace places the epoch after failed.
func (s *State) replace(sh *shuffle, failed Location, c Revive) (Location, error) {
	p := newPlacer(s.placement, c.Workers, s.openPartitions(), c.Seed)
	oldP, oldR := failed.Primary.ID, failed.Replica.ID
	loc := Location{Partition: failed.Partition, Epoch: failed.Epoch + 1}
	var ok bool
	if loc.Primary, ok = p.pickPrimary([]string{oldP, oldR}, []string{oldP}, nil); !ok {
		return Location{}, fmt.Errorf("%w: %v", ErrNoWorkers, p.stats)
	}
	if !sh.noReplica {
		newP := loc.Primary.ID
		loc.Replica, _ = p.pickReplica([]string{newP, oldP, oldR}, []string{newP, oldP}, []string{newP})
	}
	return loc, nil
}

// MapEnd records that a map attempt finished.
type MapEnd struct {
	App     string
	Shuffle int32
	Attempt MapAttempt
}

// MapEndResult says whether the attempt won, and which attempt did.
type MapEndResult struct {
	Won    bool
	Winner int32
}

// MapEnd applies c: the first attempt of a map index to end wins; the
// same attempt reporting again is told it won (a retried call); any other
// attempt is recorded and ignored (Won false). A map index without a
// winner in a committed shuffle fails with ErrCommitted.
func (s *State) MapEnd(c MapEnd) (MapEndResult, error) {
	sh, err := s.shuffleOf(c.App, c.Shuffle)
	if err != nil {
		return MapEndResult{}, err
	}
	if err := sh.checkAttempt(c.Attempt); err != nil {
		return MapEndResult{}, err
	}
	at := c.Attempt
	at.Batches = slices.Clone(at.Batches)
	if w, ok := sh.winners[at.MapIndex]; ok {
		if w.Attempt != at.Attempt && !sh.wasIgnored(at) {
			sh.ignored = append(sh.ignored, at)
		}
		return MapEndResult{Won: w.Attempt == at.Attempt, Winner: w.Attempt}, nil
	}
	if sh.committed {
		return MapEndResult{}, fmt.Errorf("%w: map %d of shuffle %d has no winner", ErrCommitted, at.MapIndex, c.Shuffle)
	}
	sh.winners[at.MapIndex] = at
	return MapEndResult{Won: true, Winner: at.Attempt}, nil
}

// checkAttempt validates a MapEnd report against the shuffle's shape.
func (sh *shuffle) checkAttempt(at MapAttempt) error {
	switch {
	case at.MapIndex < 0 || at.MapIndex >= sh.numMaps:
		return fmt.Errorf("%w: map index %d of shuffle %d (%d maps)", ErrInvalidArgument, at.MapIndex, sh.id, sh.numMaps)
	case at.Attempt < 0:
		return fmt.Errorf("%w: negative attempt %d", ErrInvalidArgument, at.Attempt)
	case len(at.Batches) > int(sh.numPartitions):
		return fmt.Errorf("%w: batch counts for %d partitions, shuffle %d has %d", ErrInvalidArgument, len(at.Batches), sh.id, sh.numPartitions)
	case slices.ContainsFunc(at.Batches, func(b int32) bool { return b < 0 }):
		return fmt.Errorf("%w: negative batch count", ErrInvalidArgument)
	}
	return nil
}

// wasIgnored reports whether at's map index and attempt were already
// recorded as ignored.
func (sh *shuffle) wasIgnored(at MapAttempt) bool {
	return slices.ContainsFunc(sh.ignored, func(i MapAttempt) bool {
		return i.MapIndex == at.MapIndex && i.Attempt == at.Attempt
	})
}

// UnregisterShuffle removes one shuffle.
type UnregisterShuffle struct {
	App     string
	Shuffle int32
}

// UnregisterShuffle applies c; ErrShuffleNotFound (or ErrAppNotFound)
// when there is nothing to remove.
func (s *State) UnregisterShuffle(c UnregisterShuffle) (Removal, error) {
	sh, err := s.shuffleOf(c.App, c.Shuffle)
	if err != nil {
		return Removal{}, err
	}
	a := s.apps[c.App]
	delete(a.shuffles, c.Shuffle)
	return s.record(Removal{App: a.id, Token: a.token, Shuffle: c.Shuffle, Workers: workersOf(sh)}), nil
}

// ShuffleInfo is a copy of a shuffle's state, for readers.
type ShuffleInfo struct {
	ID            int32
	NumMaps       int32
	NumPartitions int32
	NoReplica     bool
	Committed     bool
	// Locations holds every epoch of every partition, by partition, then
	// epoch.
	Locations []Location
	// Winners holds the winning attempt of each ended map, by map index.
	Winners []MapAttempt
	// Ignored holds the attempts that ended after their map's winner, in
	// the order they ended.
	Ignored []MapAttempt
}

// Shuffle returns a copy of one shuffle's state.
func (s *State) Shuffle(appID string, id int32) (ShuffleInfo, error) {
	sh, err := s.shuffleOf(appID, id)
	if err != nil {
		return ShuffleInfo{}, err
	}
	info := ShuffleInfo{
		ID: sh.id, NumMaps: sh.numMaps, NumPartitions: sh.numPartitions, NoReplica: sh.noReplica, Committed: sh.committed,
		Locations: slices.Concat(sh.epochs...), Ignored: cloneAttempts(sh.ignored),
	}
	for _, m := range slices.Sorted(maps.Keys(sh.winners)) {
		info.Winners = append(info.Winners, cloneAttempts([]MapAttempt{sh.winners[m]})...)
	}
	return info, nil
}

// cloneAttempts deep-copies attempts.
func cloneAttempts(in []MapAttempt) []MapAttempt {
	out := make([]MapAttempt, len(in))
	for i, a := range in {
		out[i] = MapAttempt{MapIndex: a.MapIndex, Attempt: a.Attempt, Batches: slices.Clone(a.Batches)}
	}
	return out
}
