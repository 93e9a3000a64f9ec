package master

import (
	"maps"
	"slices"
)

// Deletions are recorded intents: every Removal with workers to delete
// files on is kept in the State, with an ID, until each of its workers
// reported the files gone (DeletionDone). A master that becomes the
// leader carries out the deletions its predecessor left unfinished, so a
// failover does not leak shuffle files on the workers.

// record keeps r as a pending deletion and returns it with its ID (a
// Removal with no workers has nothing to delete and no ID).
func (s *State) record(r Removal) Removal {
	if len(r.Workers) == 0 {
		return r
	}
	s.lastDeletion++
	r.ID = s.lastDeletion
	kept := r
	kept.Workers = slices.Clone(r.Workers)
	s.deletions[r.ID] = &kept
	return r
}

// DeletionDone records that Worker no longer holds the files of the
// pending deletion ID (deleted, or given up on).
type DeletionDone struct {
	ID     uint64
	Worker string
}

// DeletionDone applies c: the worker is struck off the deletion, which
// is forgotten once no worker is left. An unknown ID or worker is a no-op
// (the same report applied twice).
func (s *State) DeletionDone(c DeletionDone) {
	r, ok := s.deletions[c.ID]
	if !ok {
		return
	}
	r.Workers = slices.DeleteFunc(r.Workers, func(w WorkerRef) bool { return w.ID == c.Worker })
	if len(r.Workers) == 0 {
		delete(s.deletions, c.ID)
	}
}

// PendingDeletions returns the deletions not finished, by ID, each with
// the workers still to delete on.
func (s *State) PendingDeletions() []Removal {
	out := make([]Removal, 0, len(s.deletions))
	for _, id := range slices.Sorted(maps.Keys(s.deletions)) {
		r := *s.deletions[id]
		r.Workers = slices.Clone(r.Workers)
		out = append(out, r)
	}
	return out
}
