package raft

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
)

// applyTask is one unit of work for a group's state machine, in log order.
type applyTask struct {
	entries []Entry
	ids     []proposalID // ids[i] is entries[i]'s proposer (zero if none)
	// restore, if set, replaces the state by the staged snapshot it names.
	restore *raftpb.SnapshotMetadata
	// snapshot asks the state machine for a snapshot of its current state.
	snapshot bool
}

// applyEvents is how an applier reports back to the host loop.
type applyEvents interface {
	snapshotCreated(group, index uint64, src SnapshotSource)
	restored(group, index uint64)
	applyFailed(group uint64, err error)
	proposalApplied(start time.Time)
}

// applier runs one group's state machine on its own goroutine, so a slow
// state machine never stalls the raft loop of other groups.
type applier struct {
	group   uint64
	host    uint64
	sm      StateMachine
	props   *proposals
	fs      vfs.FS
	snapDir string
	events  applyEvents
	log     *slog.Logger

	applied atomic.Uint64
	signal  chan struct{}
	done    chan struct{}

	mu struct {
		sync.Mutex
		queue   []applyTask
		backlog int // entries queued
		closed  bool
		waiters []applyWaiter
	}
}

type applyWaiter struct {
	index uint64
	ch    chan struct{}
}

func (a *applier) start(applied uint64) {
	a.applied.Store(applied)
	a.signal = make(chan struct{}, 1)
	a.done = make(chan struct{})
	go a.run()
}

// enqueue adds a task; it never blocks.
func (a *applier) enqueue(t applyTask) {
	a.mu.Lock()
	a.mu.queue = append(a.mu.queue, t)
	a.mu.backlog += len(t.entries)
	a.mu.Unlock()
	select {
	case a.signal <- struct{}{}:
	default:
	}
}

func (a *applier) backlog() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.backlog
}

// stop ends the goroutine after the queued tasks and waits for it.
func (a *applier) stop() {
	a.mu.Lock()
	a.mu.closed = true
	a.mu.Unlock()
	select {
	case a.signal <- struct{}{}:
	default:
	}
	<-a.done
}

// waitApplied returns a channel closed once index is applied.
func (a *applier) waitApplied(index uint64) <-chan struct{} {
	ch := make(chan struct{})
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.applied.Load() >= index {
		close(ch)
		return ch
	}
	a.mu.waiters = append(a.mu.waiters, applyWaiter{index, ch})
	return ch
}

func (a *applier) run() {
	defer close(a.done)
	for {
		tasks, closed := a.take()
		for _, t := range tasks {
			if err := a.do(t); err != nil {
				a.log.Error("state machine failed; group stops applying", "err", err)
				a.events.applyFailed(a.group, err)
				a.drainAfterFailure()
				return
			}
		}
		if closed && len(tasks) == 0 {
			return
		}
		if len(tasks) == 0 {
			<-a.signal
		}
	}
}

func (a *applier) drainAfterFailure() {
	for {
		if _, closed := a.take(); closed {
			return
		}
		<-a.signal
	}
}

func (a *applier) take() ([]applyTask, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	tasks := a.mu.queue
	a.mu.queue = nil
	return tasks, a.mu.closed
}

func (a *applier) do(t applyTask) error {
	switch {
	case t.restore != nil:
		return a.doRestore(t.restore)
	case t.snapshot:
		return a.doSnapshot()
	default:
		return a.doApply(t)
	}
}

func (a *applier) doApply(t applyTask) error {
	t = a.skipApplied(t)
	if len(t.entries) == 0 {
		return nil
	}
	results, err := a.sm.Apply(t.entries)
	if err != nil {
		return fmt.Errorf("applying entries %d-%d: %w", t.entries[0].Index, t.entries[len(t.entries)-1].Index, err)
	}
	if len(results) != len(t.entries) {
		return fmt.Errorf("state machine returned %d results for %d entries", len(results), len(t.entries))
	}
	for i, e := range t.entries {
		mine := t.ids[i].host == a.host
		if p := a.props.applied(e.Index, t.ids[i], mine, results[i]); p != nil {
			a.events.proposalApplied(p.start)
		}
	}
	a.advance(t.entries[len(t.entries)-1].Index, len(t.entries))
	return nil
}

// skipApplied drops entries the state machine already has. After a crash
// the persisted commit index can be behind what a state machine made
// durable (commit-only HardState updates are not synced), so raft may
// hand over entries again; applying them twice would break state machines
// whose commands are not idempotent.
func (a *applier) skipApplied(t applyTask) applyTask {
	applied, n := a.applied.Load(), 0
	for n < len(t.entries) && t.entries[n].Index <= applied {
		n++
	}
	if n > 0 {
		a.mu.Lock()
		a.mu.backlog -= n
		a.mu.Unlock()
		t.entries, t.ids = t.entries[n:], t.ids[n:]
	}
	return t
}

func (a *applier) doSnapshot() error {
	src, err := a.sm.Snapshot()
	if err != nil {
		return fmt.Errorf("creating snapshot: %w", err)
	}
	a.events.snapshotCreated(a.group, a.applied.Load(), src)
	return nil
}

func (a *applier) doRestore(meta *raftpb.SnapshotMetadata) error {
	index := meta.GetIndex()
	if err := restoreStaged(a.sm, a.fs, a.snapDir, a.group, meta); err != nil {
		return err
	}
	a.props.failUpTo(index, ErrProposalUnknown)
	a.advance(index, 0)
	a.events.restored(a.group, index)
	return nil
}

// restoreStaged feeds a staged snapshot file to the state machine.
func restoreStaged(sm StateMachine, fs vfs.FS, dir string, group uint64, meta *raftpb.SnapshotMetadata) error {
	path := stagedPath(fs, dir, group, meta.GetIndex(), meta.GetTerm())
	f, err := fs.Open(path)
	if err != nil {
		return fmt.Errorf("opening staged snapshot %s: %w", path, err)
	}
	defer f.Close()
	if err := sm.Restore(context.Background(), meta.GetIndex(), f); err != nil {
		return fmt.Errorf("restoring snapshot at index %d: %w", meta.GetIndex(), err)
	}
	return nil
}

// advance publishes the new applied index and wakes waiters.
func (a *applier) advance(index uint64, entries int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if index > a.applied.Load() {
		a.applied.Store(index)
	}
	a.mu.backlog -= entries
	kept := a.mu.waiters[:0]
	for _, w := range a.mu.waiters {
		if w.index <= index {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	a.mu.waiters = kept
}
