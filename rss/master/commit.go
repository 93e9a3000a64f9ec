package master

import (
	"fmt"
	"slices"
)

// CommitPlan is what committing a shuffle takes: Commit on every worker
// holding any of its locations.
type CommitPlan struct {
	// Committed is true when the shuffle is committed already: there is
	// nothing to do.
	Committed bool
	// Gen identifies the locations the plan covers (see CommitDone.Gen).
	Gen uint64
	// Workers holds every primary and replica of every epoch, by ID.
	Workers []WorkerRef
	// Token is the application's token, for the calls to the workers.
	Token string
}

// CommitPlan returns what committing a shuffle takes. It does not mutate.
func (s *State) CommitPlan(appID string, id int32) (CommitPlan, error) {
	sh, err := s.shuffleOf(appID, id)
	if err != nil {
		return CommitPlan{}, err
	}
	if sh.committed {
		return CommitPlan{Committed: true}, nil
	}
	return CommitPlan{Gen: sh.gen, Workers: workersOf(sh), Token: s.apps[appID].token}, nil
}

// CommitDone records the outcome of a commit's calls to the workers.
type CommitDone struct {
	App     string
	Shuffle int32
	// Gen is CommitPlan.Gen of the plan that was carried out.
	Gen uint64
	// Failed lists the IDs of the workers whose Commit failed.
	Failed []string
}

// CommitOutcome says how a commit changed the locations.
type CommitOutcome struct {
	// Unreplicated lists the locations whose replica failed to commit:
	// they now have no replica.
	Unreplicated []Location
	// Promoted lists the locations whose primary failed to commit but
	// whose replica committed: the replica, which held every acknowledged
	// batch, is now their primary and they have no replica.
	Promoted []Location
}

// CommitDone applies c. If every location has a committed copy the
// shuffle becomes committed: locations whose replica failed lose it, and
// locations whose primary failed have their replica promoted. If some
// location has no committed copy, nothing changes and it fails with
// ErrCommitFailed naming the partitions; if a Revive happened after the
// plan (Gen differs), with ErrShuffleChanged. Committing a committed
// shuffle is a no-op.
func (s *State) CommitDone(c CommitDone) (CommitOutcome, error) {
	sh, err := s.shuffleOf(c.App, c.Shuffle)
	if err != nil || sh.committed {
		return CommitOutcome{}, err
	}
	if c.Gen != sh.gen {
		return CommitOutcome{}, fmt.Errorf("%w: shuffle %d of %q", ErrShuffleChanged, c.Shuffle, c.App)
	}
	failed := func(r WorkerRef) bool { return slices.Contains(c.Failed, r.ID) }
	if lost := sh.lost(failed); len(lost) > 0 {
		return CommitOutcome{}, fmt.Errorf("%w: no copy of partition epochs %v committed (failed workers %v)", ErrCommitFailed, lost, c.Failed)
	}
	var out CommitOutcome
	for _, eps := range sh.epochs {
		for i := range eps {
			l := &eps[i]
			switch {
			case failed(l.Primary):
				l.Primary, l.Replica = l.Replica, WorkerRef{}
				out.Promoted = append(out.Promoted, *l)
			case !l.Replica.IsZero() && failed(l.Replica):
				l.Replica = WorkerRef{}
				out.Unreplicated = append(out.Unreplicated, *l)
			}
		}
	}
	sh.committed = true
	return out, nil
}

// lost returns "partition/epoch" of every location with no copy on a
// worker that did not fail.
func (sh *shuffle) lost(failed func(WorkerRef) bool) []string {
	var out []string
	for _, eps := range sh.epochs {
		for _, l := range eps {
			if failed(l.Primary) && (l.Replica.IsZero() || failed(l.Replica)) {
				out = append(out, fmt.Sprintf("%d/%d", l.Partition, l.Epoch))
			}
		}
	}
	return out
}
