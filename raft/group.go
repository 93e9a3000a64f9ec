package raft

import (
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	etcdraft "go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// group is one raft replica hosted by a Host. Everything except the
// atomics, props and applier is owned by the host loop.
type group struct {
	id      uint64
	rn      *etcdraft.RawNode
	store   *logStore
	sm      StateMachine
	props   *proposals
	applier *applier

	leader  atomic.Uint64
	term    atomic.Uint64
	stopped chan struct{} // closed when the group is destroyed or the host stops

	isLeader bool
	dirty    bool // queued in Host.dirty
	inFlight bool // its Ready is being persisted; no new Ready until it lands
	// afterFlight runs once the in-flight Ready has landed (operations that
	// must not race with its batch, like DestroyGroup).
	afterFlight []func()
	failed      error
	reads       map[string]*readWaiter
	confHist    []confAt // membership at each conf change index, ascending
	served      *servedSnapshot
	snapBusy    bool // a snapshot request is queued at the applier
}

type confAt struct {
	index uint64
	conf  *raftpb.ConfState
}

type readWaiter struct {
	done chan readResult
}

type readResult struct {
	index uint64
	err   error
}

// persist writes the durable part of rd into b and records which of this
// host's proposals got which index. It does not touch raft.
func (g *group) persist(b *pebble.Batch, rd *etcdraft.Ready) error {
	if !etcdraft.IsEmptySnap(rd.Snapshot) {
		if err := g.store.applySnapshot(b, rd.Snapshot.GetMetadata()); err != nil {
			return fmt.Errorf("persisting snapshot of group %d: %w", g.id, err)
		}
	}
	if len(rd.Entries) > 0 {
		if err := g.store.append(b, rd.Entries); err != nil {
			return fmt.Errorf("appending to group %d: %w", g.id, err)
		}
		g.noteAppended(rd.Entries)
	}
	if !etcdraft.IsEmptyHardState(rd.HardState) {
		if err := g.store.setHardState(b, rd.HardState); err != nil {
			return fmt.Errorf("persisting hard state of group %d: %w", g.id, err)
		}
	}
	return nil
}

func (g *group) noteAppended(ents []*raftpb.Entry) {
	for _, e := range ents {
		if id, ok := entryProposalID(e); ok {
			g.props.appended(id, e.GetIndex())
		}
	}
}

// entryProposalID returns the proposer header of a log entry.
func entryProposalID(e *raftpb.Entry) (proposalID, bool) {
	data := e.GetData()
	switch e.GetType() {
	case raftpb.EntryConfChangeV2:
		cc := &raftpb.ConfChangeV2{}
		if proto.Unmarshal(data, cc) != nil {
			return proposalID{}, false
		}
		data = cc.GetContext()
	case raftpb.EntryConfChange:
		cc := &raftpb.ConfChange{}
		if proto.Unmarshal(data, cc) != nil {
			return proposalID{}, false
		}
		data = cc.GetContext()
	}
	id, _, ok := decodeProposal(data)
	return id, ok
}

// confAt returns the membership as of index, if known.
func (g *group) confAt(index uint64) (*raftpb.ConfState, bool) {
	var cs *raftpb.ConfState
	for _, c := range g.confHist {
		if c.index > index {
			break
		}
		cs = c.conf
	}
	return cs, cs != nil
}

// pruneConfHist drops history no longer needed below index, keeping the
// entry in force at index.
func (g *group) pruneConfHist(index uint64) {
	n := 0
	for n+1 < len(g.confHist) && g.confHist[n+1].index <= index {
		n++
	}
	g.confHist = g.confHist[n:]
}

// committed turns committed raft entries into a state machine task,
// applying membership changes to raft on the way. Conf changes are
// persisted synchronously before the state machine can see them, so a
// restart never finds the state machine ahead of the stored membership.
func (g *group) committed(db *pebble.DB, sync bool, ents []*raftpb.Entry) (applyTask, error) {
	t := applyTask{entries: make([]Entry, 0, len(ents)), ids: make([]proposalID, 0, len(ents))}
	for _, e := range ents {
		ent := Entry{Index: e.GetIndex(), Term: e.GetTerm()}
		id, payload, ok := decodeProposal(e.GetData())
		switch e.GetType() {
		case raftpb.EntryNormal:
			ent.Type, ent.Data = EntryNormal, payload
			if !ok {
				ent.Type = EntryEmpty
			}
		default:
			cs, err := g.applyConf(db, sync, e)
			if err != nil {
				return t, err
			}
			ent.Type, ent.Conf = EntryConfChange, cs
			id, ok = entryProposalID(e)
		}
		if !ok {
			id = proposalID{}
		}
		t.entries, t.ids = append(t.entries, ent), append(t.ids, id)
	}
	return t, nil
}

func (g *group) applyConf(db *pebble.DB, sync bool, e *raftpb.Entry) (*raftpb.ConfState, error) {
	if e.GetIndex() <= g.store.confIndex {
		if cs, ok := g.confAt(e.GetIndex()); ok {
			return proto.CloneOf(cs), nil
		}
		return proto.CloneOf(g.store.conf), nil
	}
	cc, err := decodeConfChange(e)
	if err != nil {
		return nil, fmt.Errorf("decoding conf change at index %d of group %d: %w", e.GetIndex(), g.id, err)
	}
	cs := g.rn.ApplyConfChange(cc)
	b := db.NewBatch()
	defer b.Close()
	if err := g.store.setConf(b, cs, e.GetIndex()); err != nil {
		return nil, err
	}
	if err := b.Commit(&pebble.WriteOptions{Sync: sync}); err != nil {
		return nil, fmt.Errorf("persisting membership of group %d: %w", g.id, err)
	}
	g.confHist = append(g.confHist, confAt{e.GetIndex(), proto.CloneOf(cs)})
	return proto.CloneOf(cs), nil
}

func decodeConfChange(e *raftpb.Entry) (raftpb.ConfChangeI, error) {
	if e.GetType() == raftpb.EntryConfChange {
		cc := &raftpb.ConfChange{}
		return cc, proto.Unmarshal(e.GetData(), cc)
	}
	cc := &raftpb.ConfChangeV2{}
	return cc, proto.Unmarshal(e.GetData(), cc)
}

// noteSoftState tracks leadership; it returns whether this replica just
// became leader and whether it just stopped being leader.
func (g *group) noteSoftState(ss *etcdraft.SoftState) (won, lost bool) {
	if ss == nil {
		return false, false
	}
	g.leader.Store(ss.Lead)
	now := ss.RaftState == etcdraft.StateLeader
	won, lost = now && !g.isLeader, !now && g.isLeader
	g.isLeader = now
	if lost || ss.Lead == etcdraft.None {
		g.failReads()
	}
	return won, lost
}

func (g *group) failReads() {
	for k, w := range g.reads {
		w.done <- readResult{err: &NotLeaderError{Group: g.id, Leader: g.leader.Load()}}
		delete(g.reads, k)
	}
}

func (g *group) noteReadStates(rss []etcdraft.ReadState) {
	for _, rs := range rss {
		if w := g.reads[string(rs.RequestCtx)]; w != nil {
			w.done <- readResult{index: rs.Index}
			delete(g.reads, string(rs.RequestCtx))
		}
	}
}
