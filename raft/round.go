package raft

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	etcdraft "go.etcd.io/raft/v3"
)

// maxFlights is how many Ready rounds may be persisting at once. While one
// round's batch is being synced, the loop keeps stepping messages and
// builds the next round from groups not already in flight; Pebble folds
// concurrent synced commits into one fsync.
const maxFlights = 2

// round is one group's part of a Ready round.
type round struct {
	g  *group
	rd etcdraft.Ready
}

// flight is one Ready round whose batch is being committed.
type flight struct {
	b       *pebble.Batch
	rounds  []round
	sync    bool
	entries int
	err     error
}

// startRound takes the Ready of every dirty group that is not already in
// flight, writes them into one batch, and commits it on another goroutine;
// landed finishes the round.
func (h *Host) startRound() error {
	if h.inFlight >= maxFlights || len(h.dirty) == 0 {
		return nil
	}
	f := &flight{b: h.db.NewBatch()}
	dirty := h.dirty
	h.dirty = nil
	for _, g := range dirty {
		g.dirty = false
		if err := h.addToRound(f, g); err != nil {
			f.b.Close()
			return err
		}
	}
	if len(f.rounds) == 0 {
		f.b.Close()
		return nil
	}
	h.inFlight++
	h.persisting.Add(1)
	go func() {
		defer h.persisting.Done()
		f.err = h.commit(f)
		h.persisted <- f
	}()
	return nil
}

func (h *Host) addToRound(f *flight, g *group) error {
	switch {
	case g.failed != nil || h.groups[g.id] != g:
		return nil
	case g.inFlight:
		h.markDirty(g) // look again once its round has landed
		return nil
	case !g.rn.HasReady():
		return nil
	case g.applier.backlog() > h.cfg.MaxApplyBacklog:
		return nil // retried at the next tick, which marks every group
	}
	rd := g.rn.Ready()
	if err := g.persist(f.b, &rd); err != nil {
		return err
	}
	g.inFlight = true
	// A received snapshot replaces the log: make that durable before the
	// state machine restores it, even when raft does not ask for a sync.
	f.sync = f.sync || rd.MustSync || !etcdraft.IsEmptySnap(rd.Snapshot)
	f.entries += len(rd.Entries)
	f.rounds = append(f.rounds, round{g, rd})
	return nil
}

func (h *Host) commit(f *flight) error {
	h.metrics.readyRounds.Inc()
	if f.b.Empty() {
		return nil
	}
	sync := f.sync && !h.cfg.DisableSync
	start := time.Now()
	if err := f.b.Commit(&pebble.WriteOptions{Sync: sync}); err != nil {
		return fmt.Errorf("committing raft log batch: %w", err)
	}
	if sync {
		h.metrics.fsyncs.Inc()
		h.metrics.fsyncLatency.Observe(time.Since(start).Seconds())
		h.metrics.entriesPerFsync.Observe(float64(f.entries))
	}
	return nil
}

// landed finishes a round whose batch is durable: it sends the round's
// messages, hands committed entries to the state machines and advances
// every RawNode.
func (h *Host) landed(f *flight) error {
	h.inFlight--
	f.b.Close()
	if f.err != nil {
		return f.err
	}
	var out []Envelope
	for i := range f.rounds {
		r := &f.rounds[i]
		r.g.inFlight = false
		if h.groups[r.g.id] != r.g || r.g.failed != nil {
			continue
		}
		out = h.finishRound(r, out)
		for _, fn := range r.g.afterFlight {
			fn()
		}
		r.g.afterFlight = nil
	}
	if len(out) > 0 {
		h.cfg.Transport.Send(out)
	}
	return nil
}

func (h *Host) finishRound(r *round, out []Envelope) []Envelope {
	h.noteSoftState(r.g, r.rd.SoftState)
	out = h.collectMessages(r.g, r.rd.Messages, out)
	if err := h.handOff(r.g, &r.rd); err != nil {
		h.failGroup(r.g, err)
		return out
	}
	r.g.noteReadStates(r.rd.ReadStates)
	r.g.rn.Advance(r.rd)
	h.markDirty(r.g) // Advance may have produced more work
	h.maybeRequestSnapshot(r.g)
	return out
}
