package master

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"basalt/rss/rsspb"
)

// commitShuffle has every worker holding a location of the shuffle
// (primary or replica, every epoch) commit it, in parallel, within
// Config.CommitTimeout, then records the outcome (State.CommitDone). A
// committed shuffle is not committed again.
func (s *Server) commitShuffle(ctx context.Context, app string, shuffle int32) error {
	plan, err := view(ctx, s, func(st *State) (CommitPlan, error) { return st.CommitPlan(app, shuffle) })
	if err != nil || plan.Committed {
		return err
	}
	log := s.log.With("app", app, "shuffle", shuffle)
	failed := s.commitOnWorkers(ctx, log, app, shuffle, plan)
	if err := ctx.Err(); err != nil {
		return err
	}
	c := CommitDone{App: app, Shuffle: shuffle, Gen: plan.Gen, Failed: failed}
	out, err := update[CommitOutcome](ctx, s, Command{CommitDone: &c})
	if err != nil {
		log.Warn("shuffle not committed", "err", err)
		return err
	}
	for _, l := range out.Unreplicated {
		log.Warn("replica failed to commit; location has no replica now", "partition", l.Partition, "epoch", l.Epoch)
	}
	for _, l := range out.Promoted {
		log.Warn("primary failed to commit; replica promoted", "partition", l.Partition, "epoch", l.Epoch, "primary", l.Primary.ID)
	}
	log.Info("shuffle committed", "workers", len(plan.Workers), "failed", failed)
	return nil
}

// commitOnWorkers calls Commit on every worker of plan in parallel and
// returns the IDs of those that failed.
func (s *Server) commitOnWorkers(ctx context.Context, log *slog.Logger, app string, shuffle int32, plan CommitPlan) []string {
	ctx, cancel := context.WithTimeout(outgoing(ctx, app, plan.Token), s.cfg.CommitTimeout)
	defer cancel()
	errs := make([]error, len(plan.Workers))
	var wg sync.WaitGroup
	for i, w := range plan.Workers {
		wg.Go(func() {
			errs[i] = s.commitOn(ctx, w, shuffle)
		})
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			log.Warn("worker commit failed", "err", errCommitCall(plan.Workers[i], err))
			failed = append(failed, plan.Workers[i].ID)
		}
	}
	return failed
}

// commitOn calls Commit on one worker.
func (s *Server) commitOn(ctx context.Context, w WorkerRef, shuffle int32) error {
	client, err := s.cfg.Dialer(s.addrOf(w))
	if err != nil {
		return err
	}
	_, err = client.Commit(ctx, &rsspb.CommitRequest{ShuffleId: shuffle})
	return err
}

// deleteAsync has every worker of r delete r's files, in the background:
// each worker is tried up to Config.DeleteAttempts times with backoff,
// then given up with a warning; either way the State is told
// (DeletionDone). A worker already deleting r's files is not asked twice.
// Close abandons the retries (a later leader finishes them); after Close
// nothing is started.
func (s *Server) deleteAsync(r Removal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return
	}
	for _, w := range r.Workers {
		key := deletionKey{r.ID, w.ID}
		if s.mu.deleting[key] {
			continue
		}
		s.mu.deleting[key] = true
		s.wg.Go(func() {
			s.deleteOn(w, r)
			s.mu.Lock()
			delete(s.mu.deleting, key)
			s.mu.Unlock()
		})
	}
}

// deletionKey names one worker's part of a pending deletion.
type deletionKey struct {
	id     uint64
	worker string
}

// deleteOn retries DeleteShuffle on one worker until it succeeds, the
// attempts run out or the server closes, and records the outcome unless
// the server closed.
func (s *Server) deleteOn(w WorkerRef, r Removal) {
	log := s.log.With("app", r.App, "shuffle", r.Shuffle, "worker", w.ID)
	backoff := s.cfg.DeleteBackoff
	for attempt := 1; ; attempt++ {
		err := s.deleteCall(w, r)
		if err == nil {
			log.Debug("shuffle files deleted")
			break
		}
		if attempt >= s.cfg.DeleteAttempts {
			log.Warn("giving up deleting shuffle files", "attempts", attempt, "err", err)
			break
		}
		log.Debug("deleting shuffle files failed; retrying", "attempt", attempt, "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxDeleteBackoff)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.DeleteTimeout)
	defer cancel()
	if _, err := update[any](ctx, s, Command{DeletionDone: &DeletionDone{ID: r.ID, Worker: w.ID}}); err != nil {
		// Still pending: the next leader (or this one, next time it
		// takes over) deletes again, which is harmless.
		log.Debug("recording a deletion failed", "err", err)
	}
}

// resumeDeletions carries out the deletions still pending in the State:
// those a previous leader did not finish.
func (s *Server) resumeDeletions() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ExpiryInterval)
	defer cancel()
	pending, err := view(ctx, s, func(st *State) ([]Removal, error) { return st.PendingDeletions(), nil })
	if err != nil {
		return
	}
	for _, r := range pending {
		s.log.Info("resuming a deletion a previous leader left pending", "app", r.App, "shuffle", r.Shuffle, "workers", len(r.Workers))
		s.deleteAsync(r)
	}
}

// deleteCall makes one DeleteShuffle call.
func (s *Server) deleteCall(w WorkerRef, r Removal) error {
	ctx, cancel := context.WithTimeout(outgoing(s.ctx, r.App, r.Token), s.cfg.DeleteTimeout)
	defer cancel()
	client, err := s.cfg.Dialer(s.addrOf(w))
	if err != nil {
		return err
	}
	_, err = client.DeleteShuffle(ctx, &rsspb.DeleteShuffleRequest{AppId: r.App, ShuffleId: r.Shuffle})
	return err
}

// expiryLoop carries out the State's background duties every
// Config.ExpiryInterval until Close, while this master leads: it
// collects expired leases, and on taking over the duties resumes the
// pending deletions.
func (s *Server) expiryLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ExpiryInterval)
	defer t.Stop()
	resumed := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if !s.store.leading() {
			resumed = false
			continue
		}
		if !resumed {
			s.resumeDeletions()
			resumed = true
		}
		s.expire()
	}
}

// expire removes the applications whose lease ran out and deletes their
// files on the workers.
func (s *Server) expire() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ExpiryInterval)
	defer cancel()
	removed, err := update[[]Removal](ctx, s, Command{Expire: &Expire{Now: s.now()}})
	if err != nil {
		return
	}
	for _, r := range removed {
		s.log.Info("application lease expired; unregistered", "app", r.App, "workers", len(r.Workers))
		s.deleteAsync(r)
	}
}

// errCommitCall wraps a worker's failed Commit for the log.
func errCommitCall(w WorkerRef, err error) error {
	return fmt.Errorf("committing on worker %s (%s): %w", w.ID, w.Addr, err)
}
