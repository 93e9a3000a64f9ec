package raft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"
	etcdraft "go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"basalt/internal/pebbleutil"
	"basalt/internal/vfsutil"
)

// Host runs many raft groups in one process: one loop goroutine ticks and
// drives every group, and each Ready round persists all groups' log writes
// in one Pebble batch with one fsync (group commit) before sending messages
// and handing committed entries to the groups' state machines.
//
// All methods are safe for concurrent use.
type Host struct {
	cfg     Config
	db      *pebble.DB
	log     *slog.Logger
	metrics *metrics
	snapDir string
	snapSem chan struct{}
	// seq numbers this host's proposals. It starts at incarnation<<40, the
	// incarnation being a counter persisted and bumped at every open, so
	// IDs of proposals from before a restart, replayed from the log, never
	// match a proposal made after it.
	seq atomic.Uint64

	ctx    context.Context // canceled by Stop
	cancel context.CancelFunc
	wake   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	bg     sync.WaitGroup
	err    error // set by the loop before done closes

	mu struct {
		sync.Mutex
		msgs    []Envelope
		ops     []func()
		known   map[uint64]*group // groups hosted, for callers outside the loop
		stopped bool
	}

	// persisted receives Ready rounds whose batch is committed; capacity
	// maxFlights so a committing goroutine never blocks.
	persisted  chan *flight
	persisting sync.WaitGroup

	// Owned by the loop goroutine.
	groups   map[uint64]*group
	dirty    []*group // groups touched since their last Ready check
	inFlight int      // rounds being persisted
}

var _ Handler = (*Host)(nil)

// NewHost opens (or creates) the host's storage under cfg.Dir, brings back
// every group it hosted, and starts the loop. The caller must connect the
// transport's inbound side to the returned Host (it is a Handler).
func NewHost(cfg Config) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	h := &Host{
		cfg:       cfg,
		log:       cfg.Logger.With("host", cfg.HostID),
		metrics:   newMetrics(),
		snapDir:   cfg.FS.PathJoin(cfg.Dir, "snapshots"),
		snapSem:   make(chan struct{}, cfg.MaxConcurrentSnapshots),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		groups:    make(map[uint64]*group),
		persisted: make(chan *flight, maxFlights),
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.mu.known = make(map[uint64]*group)
	if err := h.open(); err != nil {
		h.cancel()
		return nil, err
	}
	go h.run()
	return h, nil
}

func (h *Host) open() error {
	fs := h.cfg.FS
	for _, d := range []string{h.cfg.Dir, h.snapDir} {
		if err := vfsutil.MkdirAll(fs, d); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	db, err := pebble.Open(fs.PathJoin(h.cfg.Dir, "raft"), h.pebbleOptions())
	if err != nil {
		return fmt.Errorf("opening raft log store: %w", err)
	}
	h.db = db
	if err := h.bumpIncarnation(); err != nil {
		_ = db.Close()
		return err
	}
	if err := h.loadGroups(); err != nil {
		h.closeGroups(ErrStopped)
		_ = db.Close()
		return err
	}
	return nil
}

// bumpIncarnation increments the persisted incarnation counter and starts
// the proposal sequence in its range.
func (h *Host) bumpIncarnation() error {
	var inc uint64
	v, closer, err := h.db.Get(incarnationKey)
	switch {
	case err == nil:
		inc = binary.BigEndian.Uint64(v)
		closer.Close()
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("reading incarnation: %w", err)
	}
	inc++
	if err := h.db.Set(incarnationKey, binary.BigEndian.AppendUint64(nil, inc), pebble.Sync); err != nil {
		return fmt.Errorf("persisting incarnation: %w", err)
	}
	h.seq.Store(inc << 40)
	return nil
}

// pebbleOptions tunes Pebble for a raft log: entries are written once and
// deleted soon after (compaction), so a large memtable lets most of them
// die before they are ever flushed to an sstable.
func (h *Host) pebbleOptions() *pebble.Options {
	return &pebble.Options{
		FS:                          h.cfg.FS,
		Logger:                      pebbleutil.Logger(h.log.With("component", "pebble")),
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
	}
}

func (h *Host) loadGroups() error {
	it, err := h.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRegistry}, UpperBound: []byte{prefixRegistry + 1}})
	if err != nil {
		return err
	}
	var ids []uint64
	for ok := it.First(); ok; ok = it.Next() {
		ids = append(ids, registryGroup(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("listing groups: %w", err)
	}
	for _, id := range ids {
		store, err := loadLogStore(h.db, id, h.cfg.EntryCacheBytes)
		if err != nil {
			return err
		}
		if err := h.startGroup(id, store); err != nil {
			return err
		}
	}
	h.log.Info("raft host opened", "groups", len(ids))
	return nil
}

// startGroup opens the group's state machine, restores a staged snapshot
// the state machine had not finished restoring, and creates its RawNode.
func (h *Host) startGroup(id uint64, store *logStore) error {
	sm, err := h.cfg.Factory(id)
	if err != nil {
		return fmt.Errorf("creating state machine of group %d: %w", id, err)
	}
	applied, err := h.openStateMachine(id, sm, store)
	if err != nil {
		_ = sm.Close()
		return err
	}
	g := &group{
		id: id, store: store, sm: sm, props: newProposals(),
		stopped:  make(chan struct{}),
		reads:    make(map[string]*readWaiter),
		confHist: []confAt{{store.confIndex, store.conf}},
	}
	// Raft may not be told about applied entries beyond the persisted
	// commit index; the applier skips the ones it is handed again.
	g.rn, err = etcdraft.NewRawNode(h.raftConfig(store, min(applied, store.hard.GetCommit())))
	if err != nil {
		_ = sm.Close()
		return fmt.Errorf("starting raft for group %d: %w", id, err)
	}
	g.applier = &applier{
		group: id, host: h.cfg.HostID, sm: sm, props: g.props, fs: h.cfg.FS,
		snapDir: h.snapDir, events: h, log: h.log.With("group", id),
	}
	g.applier.start(applied)
	h.groups[id] = g
	h.markDirty(g)
	h.setKnown(id, g)
	h.metrics.groups.Inc()
	return nil
}

// openStateMachine returns the index the state machine has applied, after
// finishing an interrupted snapshot restore. The log must still hold every
// entry after it. It may exceed the persisted commit index (commit-only
// HardState updates are written without sync).
func (h *Host) openStateMachine(id uint64, sm StateMachine, store *logStore) (uint64, error) {
	applied, err := sm.Open(h.ctx)
	if err != nil {
		return 0, fmt.Errorf("opening state machine of group %d: %w", id, err)
	}
	pending := raftpb.EnsureSnapshotMetadata(nil)
	found, err := getProto(h.db, groupKey(id, suffixPending), pending)
	if err != nil {
		return 0, err
	}
	if found && applied < pending.GetIndex() {
		if err := restoreStaged(sm, h.cfg.FS, h.snapDir, id, pending); err != nil {
			return 0, fmt.Errorf("group %d: finishing interrupted restore: %w", id, err)
		}
		applied = pending.GetIndex()
	}
	if applied < store.trunc.GetIndex() {
		return 0, fmt.Errorf("%w: group %d: state machine is at index %d but the log starts after %d",
			ErrGroupFailed, id, applied, store.trunc.GetIndex())
	}
	return applied, nil
}

func (h *Host) raftConfig(store *logStore, applied uint64) *etcdraft.Config {
	c := &etcdraft.Config{
		ID:                        h.cfg.HostID,
		ElectionTick:              h.cfg.ElectionTicks,
		HeartbeatTick:             h.cfg.HeartbeatTicks,
		Storage:                   store,
		Applied:                   applied,
		MaxSizePerMsg:             h.cfg.MaxSizePerMsg,
		MaxInflightMsgs:           h.cfg.MaxInflightMsgs,
		MaxUncommittedEntriesSize: h.cfg.MaxUncommittedBytes,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{h.log.With("component", "etcd-raft", "group", store.group)},
	}
	if h.cfg.LeaseReads {
		c.ReadOnlyOption = etcdraft.ReadOnlyLeaseBased
	}
	return c
}

// Collectors returns the host's Prometheus collectors, for the caller to
// register (the host registers nothing itself).
func (h *Host) Collectors() []prometheus.Collector { return h.metrics.collectors() }

// ID returns the host's ID.
func (h *Host) ID() uint64 { return h.cfg.HostID }

// Stop stops the loop, every group's state machine and the log store. It
// returns the error that stopped the host, if one did (a failed log write).
// Calling Stop again returns the same error.
func (h *Host) Stop() error {
	h.mu.Lock()
	first := !h.mu.stopped
	h.mu.stopped = true
	h.mu.Unlock()
	if first {
		close(h.stop)
	}
	<-h.done
	return h.err
}

// Done is closed when the host has stopped (by Stop or a fatal error).
func (h *Host) Done() <-chan struct{} { return h.done }

func (h *Host) setKnown(id uint64, g *group) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if g != nil {
		h.mu.known[id] = g
	} else {
		delete(h.mu.known, id)
	}
}

func (h *Host) hasGroup(id uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.known[id] != nil
}

// do runs fn on the loop goroutine; it never blocks.
func (h *Host) do(fn func()) {
	h.mu.Lock()
	h.mu.ops = append(h.mu.ops, fn)
	h.mu.Unlock()
	h.poke()
}

func (h *Host) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// call runs fn on the loop goroutine and waits for its result.
func (h *Host) call(ctx context.Context, fn func() error) error {
	return h.callAsync(ctx, func(res chan<- error) { res <- fn() })
}

// callAsync runs start on the loop goroutine and waits for the one result
// that start, or work it defers to a later loop iteration, sends on res.
func (h *Host) callAsync(ctx context.Context, start func(res chan<- error)) error {
	res := make(chan error, 1)
	h.do(func() { start(res) })
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-h.done:
		return ErrStopped
	}
}

// HandleMessages implements Handler.
func (h *Host) HandleMessages(msgs []Envelope) {
	h.mu.Lock()
	if h.mu.stopped {
		h.mu.Unlock()
		return
	}
	h.mu.msgs = append(h.mu.msgs, msgs...)
	h.mu.Unlock()
	h.poke()
}

// HandleUnreachable implements Handler.
func (h *Host) HandleUnreachable(host uint64) {
	h.do(func() {
		for _, g := range h.groups {
			g.rn.ReportUnreachable(host)
			h.markDirty(g)
		}
	})
}

func (h *Host) run() {
	defer close(h.done)
	ticker := time.NewTicker(h.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-h.stop:
			h.shutdown(nil)
			return
		case <-ticker.C:
			h.tick()
		case f := <-h.persisted:
			if err := h.landed(f); err != nil {
				h.log.Error("raft log write failed; host stops", "err", err)
				h.shutdown(err)
				return
			}
		case <-h.wake:
		}
		h.drainInbox()
		if err := h.startRound(); err != nil {
			h.log.Error("raft log write failed; host stops", "err", err)
			h.shutdown(err)
			return
		}
	}
}

func (h *Host) tick() {
	for _, g := range h.groups {
		g.rn.Tick()
		h.markDirty(g)
	}
}

// markDirty queues g for a HasReady check in the next Ready round, so a
// round costs in proportion to the groups that had work, not all groups.
// Everything that may give a RawNode work calls it.
func (h *Host) markDirty(g *group) {
	if !g.dirty {
		g.dirty = true
		h.dirty = append(h.dirty, g)
	}
}

func (h *Host) drainInbox() {
	h.mu.Lock()
	msgs, ops := h.mu.msgs, h.mu.ops
	h.mu.msgs, h.mu.ops = nil, nil
	h.mu.Unlock()
	for _, env := range msgs {
		h.step(env)
	}
	for _, op := range ops {
		op()
	}
}

func (h *Host) step(env Envelope) {
	g := h.groups[env.Group]
	if g == nil || g.failed != nil {
		return
	}
	if env.Message.GetType() == raftpb.MsgSnap && !h.snapshotStaged(env) {
		return
	}
	_ = g.rn.Step(env.Message) // errors are stale or foreign messages: dropped
	h.markDirty(g)
}

func (h *Host) snapshotStaged(env Envelope) bool {
	meta := env.Message.GetSnapshot().GetMetadata()
	_, err := h.cfg.FS.Stat(stagedPath(h.cfg.FS, h.snapDir, env.Group, meta.GetIndex(), meta.GetTerm()))
	return err == nil
}

func (h *Host) noteSoftState(g *group, ss *etcdraft.SoftState) {
	won, lost := g.noteSoftState(ss)
	if won {
		h.metrics.elections.Inc()
		h.metrics.leaders.Inc()
		h.log.Debug("became leader", "group", g.id, "term", g.rn.BasicStatus().GetTerm())
	}
	if lost {
		h.metrics.leaders.Dec()
	}
	g.term.Store(g.rn.BasicStatus().GetTerm())
}

func (h *Host) collectMessages(g *group, msgs []*raftpb.Message, out []Envelope) []Envelope {
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap {
			h.startSnapshotSend(g, m)
			continue
		}
		out = append(out, Envelope{Group: g.id, Message: m})
	}
	return out
}

func (h *Host) startSnapshotSend(g *group, m *raftpb.Message) {
	s := g.served
	if s == nil || s.index != m.GetSnapshot().GetMetadata().GetIndex() {
		g.rn.ReportSnapshot(m.GetTo(), etcdraft.SnapshotFailure)
		return
	}
	s.acquire()
	h.bg.Add(1)
	go h.sendSnapshot(g, m, s)
}

// handOff queues the Ready's snapshot restore and committed entries, in that
// order, for the group's state machine.
func (h *Host) handOff(g *group, rd *etcdraft.Ready) error {
	if !etcdraft.IsEmptySnap(rd.Snapshot) {
		meta := rd.Snapshot.GetMetadata()
		g.confHist = []confAt{{meta.GetIndex(), meta.GetConfState()}}
		g.applier.enqueue(applyTask{restore: meta})
	}
	if len(rd.CommittedEntries) == 0 {
		return nil
	}
	t, err := g.committed(h.db, !h.cfg.DisableSync, rd.CommittedEntries)
	if err != nil {
		return err
	}
	g.applier.enqueue(t)
	return nil
}

func (h *Host) maybeRequestSnapshot(g *group) {
	if g.store.wantSnap && !g.snapBusy {
		g.snapBusy = true
		g.applier.enqueue(applyTask{snapshot: true})
	}
}

// failGroup stops driving a group whose state machine or storage failed.
func (h *Host) failGroup(g *group, err error) {
	if g.failed != nil {
		return
	}
	h.log.Error("raft group failed", "group", g.id, "err", err)
	g.failed = fmt.Errorf("%w: group %d: %w", ErrGroupFailed, g.id, err)
	g.props.failAll(g.failed)
	g.failReads()
}

// applyFailed implements applyEvents.
func (h *Host) applyFailed(group uint64, err error) {
	h.do(func() {
		if g := h.groups[group]; g != nil {
			h.failGroup(g, err)
		}
	})
}

// proposalApplied implements applyEvents.
func (h *Host) proposalApplied(start time.Time) {
	h.metrics.commitLatency.Observe(time.Since(start).Seconds())
}

func (h *Host) shutdown(err error) {
	h.err = err
	h.mu.Lock()
	h.mu.stopped = true
	h.mu.Unlock()
	h.cancel()
	h.persisting.Wait()
	h.bg.Wait()
	h.closeGroups(ErrStopped)
	if cerr := h.db.Close(); cerr != nil && h.err == nil {
		h.err = fmt.Errorf("closing raft log store: %w", cerr)
	}
}

func (h *Host) closeGroups(reason error) {
	for id, g := range h.groups {
		h.closeGroup(g, reason)
		delete(h.groups, id)
	}
}

func (h *Host) closeGroup(g *group, reason error) {
	g.props.failAll(reason)
	g.failReads()
	g.applier.stop()
	if err := g.sm.Close(); err != nil {
		h.log.Warn("closing state machine", "group", g.id, "err", err)
	}
	if g.served != nil {
		g.served.retire()
	}
	close(g.stopped)
	h.setKnown(g.id, nil)
	h.metrics.groups.Dec()
	if g.isLeader {
		h.metrics.leaders.Dec()
	}
}

// removeGroupData deletes everything the host stored for a group.
func (h *Host) removeGroupData(id uint64) error {
	b := h.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(groupPrefix(id), pebbleutil.PrefixEnd(groupPrefix(id)), nil); err != nil {
		return err
	}
	if err := b.Delete(registryKey(id), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("removing group %d: %w", id, err)
	}
	removeStaged(h.cfg.FS, h.snapDir, id, math.MaxUint64)
	return nil
}
