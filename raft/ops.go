package raft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3/raftpb"
)

// CreateGroup creates a replica of group id on this host, durably, so a
// restarted host brings it back. voters is the group's initial membership
// (host IDs, this host among them); every initial member must be created
// with the same list. A replica that will join an existing group through
// ChangeMembership is created with no voters: it waits for the leader.
func (h *Host) CreateGroup(ctx context.Context, id uint64, voters []uint64) error {
	if id == 0 {
		return fmt.Errorf("%w: group ID 0", ErrInvalidConfig)
	}
	if len(voters) > 0 && !slices.Contains(voters, h.cfg.HostID) {
		return fmt.Errorf("%w: voters %v of group %d do not include this host %d", ErrInvalidConfig, voters, id, h.cfg.HostID)
	}
	return h.call(ctx, func() error { return h.createGroup(id, voters) })
}

func (h *Host) createGroup(id uint64, voters []uint64) error {
	if _, ok := h.groups[id]; ok {
		return fmt.Errorf("creating group %d: %w", id, ErrGroupExists)
	}
	store := newLogStore(h.db, id, slices.Clone(voters), h.cfg.EntryCacheBytes)
	b := h.db.NewBatch()
	defer b.Close()
	if err := store.setConf(b, store.conf, 0); err != nil {
		return err
	}
	if err := b.Set(registryKey(id), nil, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("persisting group %d: %w", id, err)
	}
	if err := h.startGroup(id, store); err != nil {
		return errors.Join(err, h.removeGroupData(id))
	}
	return nil
}

// DestroyGroup stops the local replica of a group and deletes its log and
// state. It does not change the group's membership: remove the replica
// with ChangeMembership first, or the others will keep trying to reach it.
func (h *Host) DestroyGroup(ctx context.Context, id uint64) error {
	return h.callAsync(ctx, func(res chan<- error) { h.destroyGroup(id, res) })
}

// destroyGroup waits for an in-flight Ready of the group to land, so its
// batch cannot write the group's keys back after they are deleted.
func (h *Host) destroyGroup(id uint64, res chan<- error) {
	g := h.groups[id]
	if g == nil {
		res <- fmt.Errorf("destroying group %d: %w", id, ErrGroupNotFound)
		return
	}
	if g.inFlight {
		g.afterFlight = append(g.afterFlight, func() { h.destroyGroup(id, res) })
		return
	}
	delete(h.groups, id)
	h.closeGroup(g, ErrGroupStopped)
	res <- h.removeGroupData(id)
}

// Groups returns the IDs of the groups hosted here, sorted.
func (h *Host) Groups() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]uint64, 0, len(h.mu.known))
	for id := range h.mu.known {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Propose replicates data through group id's log and returns once this host
// has applied it, with the state machine's Result. Only the leader accepts
// proposals: elsewhere it returns *NotLeaderError naming the leader. If ctx
// expires first the proposal may still be applied later.
func (h *Host) Propose(ctx context.Context, id uint64, data []byte) (any, error) {
	if len(data) > h.cfg.MaxProposalBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrProposalTooLarge, len(data), h.cfg.MaxProposalBytes)
	}
	p := h.newProposal()
	err := h.call(ctx, func() error {
		g, err := h.leaderGroup(id)
		if err != nil {
			return err
		}
		g.props.add(p)
		h.markDirty(g)
		if err := g.rn.Propose(encodeProposal(p.id, data)); err != nil {
			g.props.fail(p.id, err)
			return fmt.Errorf("proposing to group %d: %w: %w", id, ErrProposalDropped, err)
		}
		return nil
	})
	return h.await(ctx, p, err)
}

func (h *Host) newProposal() *proposal {
	h.metrics.proposals.Inc()
	return &proposal{
		id:    proposalID{host: h.cfg.HostID, seq: h.seq.Add(1)},
		start: time.Now(),
		done:  make(chan Result, 1),
	}
}

func (h *Host) await(ctx context.Context, p *proposal, err error) (any, error) {
	if err != nil {
		h.metrics.proposalsFailed.Inc()
		return nil, err
	}
	select {
	case r := <-p.done:
		return r.Value, r.Err
	case <-ctx.Done():
		h.metrics.proposalsFailed.Inc()
		return nil, ctx.Err()
	case <-h.done:
		return nil, ErrStopped
	}
}

// leaderGroup returns group id if this host leads it.
// REQUIRES: running on the loop goroutine.
func (h *Host) leaderGroup(id uint64) (*group, error) {
	g := h.groups[id]
	switch {
	case g == nil:
		return nil, fmt.Errorf("group %d: %w", id, ErrGroupNotFound)
	case g.failed != nil:
		return nil, g.failed
	case !g.isLeader:
		return nil, &NotLeaderError{Group: id, Leader: g.leader.Load()}
	}
	return g, nil
}

// ChangeMembership proposes a membership change on the leader and returns
// once this host has applied it. Use AddLearner, PromoteLearner and
// RemoveMember for the common single-step changes.
func (h *Host) ChangeMembership(ctx context.Context, id uint64, cc *raftpb.ConfChangeV2) error {
	p := h.newProposal()
	err := h.call(ctx, func() error {
		g, err := h.leaderGroup(id)
		if err != nil {
			return err
		}
		cc.Context = encodeProposal(p.id, nil)
		g.props.add(p)
		h.markDirty(g)
		if err := g.rn.ProposeConfChange(cc); err != nil {
			g.props.fail(p.id, err)
			return fmt.Errorf("changing membership of group %d: %w: %w", id, ErrProposalDropped, err)
		}
		return nil
	})
	_, err = h.await(ctx, p, err)
	return err
}

func (h *Host) changeOne(ctx context.Context, id, host uint64, typ raftpb.ConfChangeType) error {
	cc := &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(host)}}}
	return h.ChangeMembership(ctx, id, cc)
}

// AddLearner adds host as a non-voting member of group id; the host must
// already have created the group with no voters. It catches up from the log
// or, if the log was compacted, from a snapshot.
func (h *Host) AddLearner(ctx context.Context, id, host uint64) error {
	return h.changeOne(ctx, id, host, raftpb.ConfChangeAddLearnerNode)
}

// PromoteLearner makes learner host a voter of group id.
func (h *Host) PromoteLearner(ctx context.Context, id, host uint64) error {
	return h.changeOne(ctx, id, host, raftpb.ConfChangeAddNode)
}

// RemoveMember removes host (voter or learner) from group id.
func (h *Host) RemoveMember(ctx context.Context, id, host uint64) error {
	return h.changeOne(ctx, id, host, raftpb.ConfChangeRemoveNode)
}

// ReadIndex is a linearizable read barrier: when it returns nil, group id's
// state machine on this host has applied every entry committed before the
// call, so reading it is linearizable. Only the leader serves reads (with
// LeaseReads, from its lease without a network round trip).
func (h *Host) ReadIndex(ctx context.Context, id uint64) error {
	w := &readWaiter{done: make(chan readResult, 1)}
	var g *group
	err := h.call(ctx, func() error {
		var err error
		if g, err = h.leaderGroup(id); err != nil {
			return err
		}
		rctx := binary.BigEndian.AppendUint64(nil, h.seq.Add(1))
		g.reads[string(rctx)] = w
		g.rn.ReadIndex(rctx)
		h.markDirty(g)
		return nil
	})
	if err != nil {
		return err
	}
	var res readResult
	select {
	case res = <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stopped:
		return ErrGroupStopped
	}
	if res.err != nil {
		return res.err
	}
	return h.waitApplied(ctx, g, res.index)
}

func (h *Host) waitApplied(ctx context.Context, g *group, index uint64) error {
	select {
	case <-g.applier.waitApplied(index):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-g.stopped:
		return ErrGroupStopped
	}
}

// TransferLeadership asks the leader of group id (this host) to hand
// leadership to host to, and waits until to leads or ctx expires. Raft
// abandons a transfer the target cannot take yet (for example, it has not
// applied its own promotion); the request is repeated every election
// timeout until ctx expires.
func (h *Host) TransferLeadership(ctx context.Context, id, to uint64) error {
	retry := time.Duration(2*h.cfg.ElectionTicks) * h.cfg.TickInterval
	for {
		if err := h.startTransfer(ctx, id, to); err != nil {
			return err
		}
		done, err := h.waitLeader(ctx, id, to, retry)
		if done || err != nil {
			return err
		}
	}
}

// startTransfer asks raft to transfer leadership; it is a no-op once to
// leads.
func (h *Host) startTransfer(ctx context.Context, id, to uint64) error {
	return h.call(ctx, func() error {
		g := h.groups[id]
		if g != nil && g.leader.Load() == to {
			return nil
		}
		g, err := h.leaderGroup(id)
		if err != nil {
			return err
		}
		g.rn.TransferLeader(to)
		h.markDirty(g)
		return nil
	})
}

// waitLeader polls until to leads group id (true), for at most d.
func (h *Host) waitLeader(ctx context.Context, id, to uint64, d time.Duration) (bool, error) {
	t := time.NewTicker(h.cfg.TickInterval)
	defer t.Stop()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l, _, err := h.Leader(id); err != nil || l == to {
			return err == nil, err
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return false, fmt.Errorf("%w: group %d to host %d: %w", ErrTransferFailed, id, to, ctx.Err())
		}
	}
	return false, nil
}

// Compact tells the host that group id's state machine has made its state
// up to index durable, so the log may be truncated there (keeping
// LogRetainEntries entries for lagging followers).
func (h *Host) Compact(ctx context.Context, id, index uint64) error {
	return h.call(ctx, func() error {
		g := h.groups[id]
		if g == nil {
			return fmt.Errorf("compacting group %d: %w", id, ErrGroupNotFound)
		}
		index = min(index, g.applier.applied.Load())
		if index <= h.cfg.LogRetainEntries {
			return nil
		}
		return h.compact(g, index-h.cfg.LogRetainEntries)
	})
}

func (h *Host) compact(g *group, index uint64) error {
	b := h.db.NewBatch()
	defer b.Close()
	if err := g.store.compact(b, index); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("compacting group %d: %w", g.id, err)
	}
	g.pruneConfHist(index)
	return nil
}

// GroupStatus describes one replica as this host sees it.
type GroupStatus struct {
	Group      uint64
	Leader     uint64
	Term       uint64
	Role       string
	Commit     uint64
	Applied    uint64 // by the state machine
	FirstIndex uint64
	LastIndex  uint64
	Voters     []uint64
	Learners   []uint64
	Failed     error
}

// Status returns group id's status on this host.
func (h *Host) Status(ctx context.Context, id uint64) (GroupStatus, error) {
	var st GroupStatus
	err := h.call(ctx, func() error {
		g := h.groups[id]
		if g == nil {
			return fmt.Errorf("group %d: %w", id, ErrGroupNotFound)
		}
		st = g.status()
		return nil
	})
	return st, err
}

func (g *group) status() GroupStatus {
	bs := g.rn.BasicStatus()
	first, _ := g.store.FirstIndex()
	return GroupStatus{
		Group: g.id, Leader: bs.Lead, Term: bs.GetTerm(), Role: bs.RaftState.String(),
		Commit: bs.GetCommit(), Applied: g.applier.applied.Load(),
		FirstIndex: first, LastIndex: g.store.last,
		Voters:   slices.Sorted(slices.Values(g.store.conf.GetVoters())),
		Learners: slices.Sorted(slices.Values(g.store.conf.GetLearners())),
		Failed:   g.failed,
	}
}

// Leader returns the leader of group id and its term as last seen by this
// host (leader 0 if unknown), without waiting for the loop.
func (h *Host) Leader(id uint64) (leader, term uint64, err error) {
	h.mu.Lock()
	g := h.mu.known[id]
	h.mu.Unlock()
	if g == nil {
		return 0, 0, fmt.Errorf("group %d: %w", id, ErrGroupNotFound)
	}
	return g.leader.Load(), g.term.Load(), nil
}
