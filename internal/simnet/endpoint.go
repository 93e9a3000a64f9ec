package simnet

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"basalt/raft"
)

// Endpoint is one host's attachment to a Network; it implements
// raft.Transport. Create it with Network.Endpoint.
type Endpoint struct {
	net     *Network
	host    uint64
	handler atomic.Pointer[handlerRef]
	inbox   inbox
}

var _ raft.Transport = (*Endpoint)(nil)

func newEndpoint(n *Network, host uint64) *Endpoint {
	return &Endpoint{net: n, host: host, inbox: inbox{wake: make(chan struct{}, 1)}}
}

// Host returns the endpoint's host ID.
func (e *Endpoint) Host() uint64 { return e.host }

// SetHandler sets the receiver of this host's inbound traffic. Until it is
// called, messages to the host are dropped and snapshots refused.
func (e *Endpoint) SetHandler(h raft.Handler) {
	e.handler.Store(&handlerRef{h: h})
}

func (e *Endpoint) loadHandler() raft.Handler {
	if ref := e.handler.Load(); ref != nil {
		return ref.h
	}
	return nil
}

// Send implements raft.Transport. Each message is copied (marshaled) at
// once and delivered later from the destination's delivery goroutine; a
// message to a host that is down, partitioned away or unknown is dropped
// and reported to this host's handler with HandleUnreachable.
func (e *Endpoint) Send(msgs []raft.Envelope) {
	for _, env := range msgs {
		e.net.route(e.host, env)
	}
}

// delivery is one message copy in flight.
type delivery struct {
	from, to uint64
	group    uint64
	data     []byte // the marshaled raftpb.Message
}

// route decides the fate of one message and schedules its copies.
func (n *Network) route(from uint64, env raft.Envelope) {
	data, err := proto.Marshal(env.Message)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.stats.Sent++
	d := n.decideLocked()
	to := env.Message.GetTo()
	switch {
	case err != nil || to == 0 || d.drop:
		n.mu.stats.Dropped++
	case !n.linkUpLocked(from, to):
		n.mu.stats.Dropped++
		n.unreachableLocked(from, to)
	default:
		n.mu.stats.Duplicated += uint64(len(d.delays) - 1)
		for _, delay := range d.delays {
			n.scheduleLocked(delivery{from: from, to: to, group: env.Group, data: data}, delay)
		}
	}
}

// unreachableLocked tells from's handler (asynchronously) that to could not
// be reached.
// REQUIRES: n.mu held.
func (n *Network) unreachableLocked(from, to uint64) {
	if e, ok := n.mu.endpoints[from]; ok {
		e.inbox.pushUnreachable(to)
	}
}

// scheduleLocked hands d to its destination's inbox now (no delay: FIFO)
// or when a timer fires.
// REQUIRES: n.mu held.
func (n *Network) scheduleLocked(d delivery, delay time.Duration) {
	dst := n.mu.endpoints[d.to]
	if delay <= 0 {
		dst.inbox.push(d)
		return
	}
	n.mu.nextTimer++
	id := n.mu.nextTimer
	n.wg.Add(1)
	n.mu.timers[id] = time.AfterFunc(delay, func() {
		defer n.wg.Done()
		n.fire(id, dst, d)
	})
}

// fire delivers a delayed message unless the network closed meanwhile.
func (n *Network) fire(id uint64, dst *Endpoint, d delivery) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		return
	}
	delete(n.mu.timers, id)
	dst.inbox.push(d)
}

// run is the endpoint's delivery goroutine.
func (e *Endpoint) run() {
	for {
		select {
		case <-e.net.ctx.Done():
			return
		case <-e.inbox.wake:
		}
		msgs, unreachable := e.inbox.take()
		e.deliver(msgs)
		if h := e.loadHandler(); h != nil {
			for _, host := range unreachable {
				h.HandleUnreachable(host)
			}
		}
	}
}

// deliver hands msgs to the handler, dropping those whose link went down
// while they were in flight.
func (e *Endpoint) deliver(msgs []delivery) {
	if len(msgs) == 0 {
		return
	}
	h := e.loadHandler()
	envs := e.net.admit(msgs, h != nil)
	if len(envs) > 0 {
		h.HandleMessages(envs)
		e.net.countDelivered(len(envs))
	}
}

// countDelivered counts messages once the handler has them.
func (n *Network) countDelivered(k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.stats.Delivered += uint64(k)
}

// admit re-checks the links of msgs and decodes those that may be
// delivered (none if !deliverable, when the destination has no handler).
func (n *Network) admit(msgs []delivery, deliverable bool) []raft.Envelope {
	n.mu.Lock()
	defer n.mu.Unlock()
	var envs []raft.Envelope
	for _, d := range msgs {
		if !n.linkUpLocked(d.from, d.to) {
			n.mu.stats.Dropped++
			n.unreachableLocked(d.from, d.to)
			continue
		}
		env, err := decode(d)
		if err != nil || !deliverable {
			n.mu.stats.Dropped++
			continue
		}
		envs = append(envs, env)
	}
	return envs
}

// decode unmarshals a delivery into a fresh Envelope, so the receiver
// never shares memory with the sender or with another copy.
func decode(d delivery) (raft.Envelope, error) {
	m := new(raftpb.Message)
	if err := proto.Unmarshal(d.data, m); err != nil {
		return raft.Envelope{}, err
	}
	return raft.Envelope{Group: d.group, Message: m}, nil
}

// inbox is an endpoint's unbounded queue of deliveries and pending
// unreachable reports.
type inbox struct {
	mu          sync.Mutex
	msgs        []delivery
	unreachable map[uint64]struct{}
	wake        chan struct{} // capacity 1: "there is something to take"
}

func (b *inbox) push(d delivery) {
	b.mu.Lock()
	b.msgs = append(b.msgs, d)
	b.mu.Unlock()
	b.signal()
}

func (b *inbox) pushUnreachable(host uint64) {
	b.mu.Lock()
	if b.unreachable == nil {
		b.unreachable = make(map[uint64]struct{})
	}
	b.unreachable[host] = struct{}{}
	b.mu.Unlock()
	b.signal()
}

func (b *inbox) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// take empties the inbox; unreachable hosts come back sorted.
func (b *inbox) take() ([]delivery, []uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	msgs, hosts := b.msgs, slices.Sorted(maps.Keys(b.unreachable))
	b.msgs, b.unreachable = nil, nil
	return msgs, hosts
}
