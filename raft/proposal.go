package raft

import (
	"encoding/binary"
	"sync"
	"time"
)

// Every proposed entry starts with a header naming the host that proposed it
// and a per-host sequence number, so the proposer can find its waiter when
// the entry is applied. Conf changes carry the header in their Context.
const (
	headerVersion = 1
	headerLen     = 17 // version(1) host(8) seq(8)
)

type proposalID struct {
	host, seq uint64
}

func encodeProposal(id proposalID, payload []byte) []byte {
	b := make([]byte, headerLen, headerLen+len(payload))
	b[0] = headerVersion
	binary.BigEndian.PutUint64(b[1:9], id.host)
	binary.BigEndian.PutUint64(b[9:17], id.seq)
	return append(b, payload...)
}

// decodeProposal splits entry data into its header and payload; ok is false
// for data without a valid header.
func decodeProposal(data []byte) (id proposalID, payload []byte, ok bool) {
	if len(data) < headerLen || data[0] != headerVersion {
		return proposalID{}, nil, false
	}
	id = proposalID{binary.BigEndian.Uint64(data[1:9]), binary.BigEndian.Uint64(data[9:17])}
	return id, data[headerLen:], true
}

// proposal is a command waiting to be applied on the host that proposed it.
type proposal struct {
	id      proposalID
	start   time.Time
	index   uint64 // log index, once the leader has appended it
	done    chan Result
	settled bool
}

func (p *proposal) settle(r Result) {
	if !p.settled {
		p.settled = true
		p.done <- r
	}
}

// proposals tracks a group's in-flight proposals. The loop registers them
// and learns their indexes; the apply goroutine settles them.
type proposals struct {
	mu struct {
		sync.Mutex
		byID    map[proposalID]*proposal
		byIndex map[uint64]*proposal
	}
}

func newProposals() *proposals {
	p := &proposals{}
	p.mu.byID = make(map[proposalID]*proposal)
	p.mu.byIndex = make(map[uint64]*proposal)
	return p
}

func (ps *proposals) add(p *proposal) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.mu.byID[p.id] = p
}

// appended records that the proposal id got log index index. A different
// proposal that held index before lost its place: it fails.
func (ps *proposals) appended(id proposalID, index uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p := ps.mu.byID[id]
	if p == nil {
		return
	}
	if old := ps.mu.byIndex[index]; old != nil && old != p {
		ps.removeLocked(old, Result{Err: ErrProposalDropped})
	}
	p.index = index
	ps.mu.byIndex[index] = p
}

// applied settles proposals whose index is index: the owner of id succeeds
// with r, anyone else who held index was overwritten and fails. It returns
// the settled proposal that succeeded, if any.
func (ps *proposals) applied(index uint64, id proposalID, hasID bool, r Result) *proposal {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if old := ps.mu.byIndex[index]; old != nil && (!hasID || old.id != id) {
		ps.removeLocked(old, Result{Err: ErrProposalDropped})
	}
	if !hasID {
		return nil
	}
	p := ps.mu.byID[id]
	if p == nil {
		return nil
	}
	ps.removeLocked(p, r)
	return p
}

// failUpTo fails every proposal with a known index at or below index (a
// snapshot replaced those entries; their fate is unknown here).
func (ps *proposals) failUpTo(index uint64, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i, p := range ps.mu.byIndex {
		if i <= index {
			ps.removeLocked(p, Result{Err: err})
		}
	}
}

// fail settles one proposal that never made it into the log.
func (ps *proposals) fail(id proposalID, err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.mu.byID[id]; p != nil {
		ps.removeLocked(p, Result{Err: err})
	}
}

// failAll settles every proposal (the group or host stops).
func (ps *proposals) failAll(err error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.mu.byID {
		ps.removeLocked(p, Result{Err: err})
	}
}

// REQUIRES: ps.mu held.
func (ps *proposals) removeLocked(p *proposal, r Result) {
	delete(ps.mu.byID, p.id)
	if ps.mu.byIndex[p.index] == p {
		delete(ps.mu.byIndex, p.index)
	}
	p.settle(r)
}
