package simnet

import (
	"context"
	"errors"
	"math/rand"
	"sync"
	"time"

	"basalt/raft"
)

// Errors returned by SendSnapshot. Test with errors.Is.
var (
	// ErrUnreachable means the destination is down, partitioned away or
	// unknown, or the link failed during a snapshot.
	ErrUnreachable = errors.New("simnet: host unreachable")
	// ErrDropped means the network dropped the snapshot (drop rate).
	ErrDropped = errors.New("simnet: dropped by the network")
	// ErrClosed is returned after Network.Close.
	ErrClosed = errors.New("simnet: network closed")
	// ErrNoHandler means the destination has no handler set.
	ErrNoHandler = errors.New("simnet: no handler set")
	// ErrSnapshotRejected wraps the destination handler's error.
	ErrSnapshotRejected = errors.New("simnet: snapshot rejected")
)

// Stats counts what the network did with messages. A duplicated message
// counts once in Sent and once in Duplicated; each copy is then delivered
// or dropped on its own.
type Stats struct {
	// Sent is the number of messages passed to Send.
	Sent uint64
	// Delivered is the number of messages a handler has received (counted
	// when HandleMessages returns).
	Delivered uint64
	// Dropped is the number of message copies lost: link down, drop rate,
	// no handler, or sent after Close.
	Dropped uint64
	// Duplicated is the number of extra copies made.
	Duplicated uint64
	// Snapshots is the number of SendSnapshot calls; SnapshotsFailed those
	// that returned an error.
	Snapshots, SnapshotsFailed uint64
}

// Network is an in-process network of Endpoints with injectable faults.
// All methods may be called concurrently. Fault decisions (drop, duplicate,
// delay) are drawn from one rand source seeded by New, under a mutex, in a
// fixed number of draws per message: the same seed and the same sequence of
// Send calls and fault settings give the same decisions. Delivery timing is
// not deterministic.
type Network struct {
	seed int64
	// ctx is cancelled by Close.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		rng       *rand.Rand
		closed    bool
		endpoints map[uint64]*Endpoint
		side      map[uint64]int // partition side; hosts not listed are on side 0
		nextSide  int            // highest side in use
		down      map[uint64]bool
		dropRate  float64
		dupRate   float64
		minDelay  time.Duration
		maxDelay  time.Duration
		timers    map[uint64]*time.Timer
		nextTimer uint64
		stats     Stats
	}
}

// New returns a network without faults whose decisions are drawn from
// seed.
func New(seed int64) *Network {
	n := &Network{seed: seed}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.mu.rng = rand.New(rand.NewSource(seed))
	n.mu.endpoints = make(map[uint64]*Endpoint)
	n.mu.side = make(map[uint64]int)
	n.mu.down = make(map[uint64]bool)
	n.mu.timers = make(map[uint64]*time.Timer)
	return n
}

// Seed returns the seed New was given; print it when a test fails so the
// failure replays.
func (n *Network) Seed() int64 { return n.seed }

// Endpoint returns host's endpoint, creating it (and its delivery
// goroutine) on first use. After Close it returns an endpoint that drops
// everything.
func (n *Network) Endpoint(host uint64) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e, ok := n.mu.endpoints[host]; ok {
		return e
	}
	e := newEndpoint(n, host)
	n.mu.endpoints[host] = e
	if !n.mu.closed {
		n.wg.Go(e.run)
	}
	return e
}

// Partition splits the hosts into the given sets, replacing any earlier
// partition: hosts in different sets cannot talk. Hosts not listed form one
// more set together.
func (n *Network) Partition(groups ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.side = make(map[uint64]int)
	for i, g := range groups {
		for _, h := range g {
			n.mu.side[h] = i + 1
		}
	}
	n.mu.nextSide = len(groups)
}

// Isolate moves host into a set of its own, keeping the rest of the
// partition.
func (n *Network) Isolate(host uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.nextSide++
	n.mu.side[host] = n.mu.nextSide
}

// Heal removes every partition. Disconnected hosts stay down.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.side = make(map[uint64]int)
	n.mu.nextSide = 0
}

// Disconnect takes host down, as if it crashed: messages to and from it,
// including those in flight, are dropped until Reconnect.
func (n *Network) Disconnect(host uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.down[host] = true
}

// Reconnect brings host back up.
func (n *Network) Reconnect(host uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.mu.down, host)
}

// SetDropRate makes the network drop each message (and snapshot) with
// probability p, clamped to [0, 1]. Random drops are not reported as
// unreachable. Zero (the default) drops nothing.
func (n *Network) SetDropRate(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.dropRate = clamp(p)
}

// SetDuplicateRate makes the network deliver a second copy of each message
// with probability p, clamped to [0, 1]. Zero (the default) duplicates
// nothing.
func (n *Network) SetDuplicateRate(p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.dupRate = clamp(p)
}

// SetDelay delays each message copy by a random duration in [min, max],
// which also reorders messages. Negative values count as zero and max below
// min as min. With both zero (the default) messages are delivered as soon
// as possible, in order per (from, to) pair.
func (n *Network) SetDelay(min, max time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.minDelay = maxDur(min, 0)
	n.mu.maxDelay = maxDur(max, n.mu.minDelay)
}

// Stats returns the counters so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.stats
}

// Close stops every delivery goroutine and pending delay timer, drops
// undelivered messages and waits for handler calls in progress (including
// snapshot handlers) to return. Later sends are dropped. It is safe to call
// more than once.
func (n *Network) Close() {
	n.mu.Lock()
	n.mu.closed = true
	for id, t := range n.mu.timers {
		if t.Stop() {
			n.wg.Done()
		}
		delete(n.mu.timers, id)
	}
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
}

func clamp(p float64) float64 { return min(max(p, 0), 1) }

// maxDur is max for parameters that shadow the builtin.
func maxDur(a, b time.Duration) time.Duration { return max(a, b) }

// linkUpLocked reports whether from and to can talk.
// REQUIRES: n.mu held.
func (n *Network) linkUpLocked(from, to uint64) bool {
	_, known := n.mu.endpoints[to]
	return known && !n.mu.closed && !n.mu.down[from] && !n.mu.down[to] &&
		n.mu.side[from] == n.mu.side[to]
}

// linkUp reports whether from and to can talk.
func (n *Network) linkUp(from, to uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.linkUpLocked(from, to)
}

// decision is what the network does with one message.
type decision struct {
	drop   bool
	delays []time.Duration // one per copy to deliver
}

// decideLocked draws the fate of one message: always four draws, so that
// changing one fault setting does not shift the others' decisions.
// REQUIRES: n.mu held.
func (n *Network) decideLocked() decision {
	rng := n.mu.rng
	drop, dup := rng.Float64() < n.mu.dropRate, rng.Float64() < n.mu.dupRate
	d1, d2 := n.delayLocked(rng.Float64()), n.delayLocked(rng.Float64())
	if drop {
		return decision{drop: true}
	}
	if dup {
		return decision{delays: []time.Duration{d1, d2}}
	}
	return decision{delays: []time.Duration{d1}}
}

// delayLocked scales f in [0, 1) to the configured delay range.
// REQUIRES: n.mu held.
func (n *Network) delayLocked(f float64) time.Duration {
	span := n.mu.maxDelay - n.mu.minDelay
	return n.mu.minDelay + time.Duration(f*float64(span))
}

// handlerRef boxes a raft.Handler for atomic.Pointer.
type handlerRef struct{ h raft.Handler }
