package gossip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Roles of a member (Meta.Role).
const (
	RoleWorker = "worker"
	RoleMaster = "master"
)

// Meta is what a member publishes about itself.
type Meta struct {
	// ID names the member (a worker's ID); unique in the cluster.
	ID string `json:"id"`
	// Addr is the member's gRPC address, host:port.
	Addr string `json:"addr"`
	// DiskFreeBytes is the free space of the member's disks, in bytes.
	DiskFreeBytes uint64 `json:"disk_free"`
	// MemoryUsedBytes is the memory the member's buffers hold, in bytes.
	MemoryUsedBytes uint64 `json:"mem_used"`
	// ActivePartitions is the number of partitions the member writes.
	ActivePartitions int32 `json:"active_partitions"`
	// Decommissioning: the member takes no new partitions.
	Decommissioning bool `json:"decommissioning,omitempty"`
	// Role is RoleWorker or RoleMaster.
	Role string `json:"role"`
}

// ErrInvalidConfig is returned (wrapped) by Start for a bad Config.
var ErrInvalidConfig = errors.New("gossip: invalid config")

// ErrMetaTooLarge is returned (wrapped) when a Meta's JSON is longer than
// memberlist's limit of memberlist.MetaMaxSize (512) bytes.
var ErrMetaTooLarge = errors.New("gossip: meta too large")

// Config configures a Node. Zero fields take their defaults.
type Config struct {
	// Name is the node's unique name in memberlist. Default: Meta().ID,
	// or BindAddr when that is empty too.
	Name string
	// BindAddr is the host:port to gossip on (TCP and UDP). Port 0 picks
	// a free port (see Node.Addr). Required.
	BindAddr string
	// Join lists host:port gossip addresses of members to join. Empty:
	// this node starts a cluster that others join.
	Join []string
	// Meta returns the local member's current Meta. Required; called
	// every UpdateInterval from the Node's goroutine.
	Meta func() Meta
	// Logger receives the Node's and memberlist's logs. Default: discard.
	Logger *slog.Logger
	// UpdateInterval is how often Meta is re-read and, if it changed,
	// re-gossiped. Default 1s.
	UpdateInterval time.Duration
	// LeaveTimeout bounds how long Close waits for the leave message to
	// be gossiped. Default 1s.
	LeaveTimeout time.Duration
	// Tune, if set, adjusts the memberlist configuration after this
	// package's settings (DefaultLANConfig with ProbeInterval 500ms,
	// ProbeTimeout 250ms, GossipInterval 100ms, PushPullInterval 10s,
	// TCPTimeout 2s) and before memberlist is created; it must not set
	// Delegate, Events, Logger or LogOutput.
	Tune func(*memberlist.Config)
}

// Defaults of Config.
const (
	DefaultUpdateInterval = time.Second
	DefaultLeaveTimeout   = time.Second
)

// Join retry backoff bounds.
const (
	joinBackoffMin = 50 * time.Millisecond
	joinBackoffMax = 2 * time.Second
)

// validate fills defaults and checks cfg.
func (c *Config) validate() error {
	if c.Meta == nil {
		return fmt.Errorf("%w: Meta is nil", ErrInvalidConfig)
	}
	if _, _, err := splitHostPort(c.BindAddr); err != nil {
		return fmt.Errorf("%w: BindAddr: %w", ErrInvalidConfig, err)
	}
	if c.Name == "" {
		c.Name = cmpOr(c.Meta().ID, c.BindAddr)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.UpdateInterval <= 0 {
		c.UpdateInterval = DefaultUpdateInterval
	}
	if c.LeaveTimeout <= 0 {
		c.LeaveTimeout = DefaultLeaveTimeout
	}
	return nil
}

func cmpOr(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// splitHostPort splits a host:port bind address.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("parsing %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("parsing %q: bad port %q", addr, p)
	}
	return host, port, nil
}

// Node is a running member. Create it with Start; stop it with Close.
type Node struct {
	cfg    Config
	log    *slog.Logger
	ml     *memberlist.Memberlist
	del    *delegate
	events *events
	// stop ends the Node's goroutines (Close); the join loop also ends
	// with Start's ctx.
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
	err    error
}

// Start binds the gossip listener and starts the Node. Joining
// Config.Join happens in the background, retried with backoff until it
// succeeds, and again whenever the node is alone, until ctx is done or
// Close is called; the node keeps running after ctx is done until Close.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	meta, err := encodeMeta(cfg.Meta())
	if err != nil {
		return nil, err
	}
	del := &delegate{}
	del.set(meta)
	ev := &events{}
	ev.mu.members = make(map[string]Meta)
	mc, err := memberlistConfig(cfg, del, ev)
	if err != nil {
		return nil, err
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: starting memberlist on %s: %w", cfg.BindAddr, err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.Name), ml: ml, del: del, events: ev}
	running, stop := context.WithCancel(context.Background())
	joining, stopJoining := context.WithCancel(ctx)
	n.stop = func() { stop(); stopJoining() }
	n.wg.Add(2)
	go n.joinLoop(joining)
	go n.updateLoop(running)
	n.log.Info("gossip started", "addr", n.Addr(), "join", cfg.Join)
	return n, nil
}

// memberlistConfig builds memberlist's configuration from cfg.
func memberlistConfig(cfg Config, del *delegate, ev *events) (*memberlist.Config, error) {
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: BindAddr: %w", ErrInvalidConfig, err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	mc.ProbeInterval = 500 * time.Millisecond
	mc.ProbeTimeout = 250 * time.Millisecond
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 10 * time.Second
	mc.TCPTimeout = 2 * time.Second
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	mc.Delegate, mc.Events = del, ev
	mc.LogOutput = nil
	mc.Logger = newLogLogger(cfg.Logger)
	return mc, nil
}

// Addr returns the node's gossip address (host:port) for others' Join,
// with the port actually bound when Config.BindAddr had port 0.
func (n *Node) Addr() string {
	return n.ml.LocalNode().Address()
}

// Members returns the Meta of every live member, this node included, in
// no particular order: members memberlist has seen join and not yet
// declared dead or departed (a suspect member stays until it is declared
// dead). Members whose metadata does not decode are left out. Safe for
// concurrent use.
func (n *Node) Members() []Meta {
	return n.events.members()
}

// Close leaves the cluster (waiting at most Config.LeaveTimeout for the
// message to go out), stops the Node's goroutines and shuts memberlist
// down. Later calls return the first call's result.
func (n *Node) Close() error {
	n.closed.Do(func() {
		n.stop()
		n.wg.Wait()
		if err := n.ml.Leave(n.cfg.LeaveTimeout); err != nil {
			n.log.Warn("gossip leave incomplete", "err", err)
		}
		if err := n.ml.Shutdown(); err != nil {
			n.err = fmt.Errorf("gossip: shutting down memberlist: %w", err)
		}
		n.log.Info("gossip stopped")
	})
	return n.err
}

// joinLoop joins Config.Join whenever this node is alone, with
// exponential backoff between failed attempts, until ctx is done.
func (n *Node) joinLoop(ctx context.Context) {
	defer n.wg.Done()
	if len(n.cfg.Join) == 0 {
		return
	}
	backoff := joinBackoffMin
	for {
		wait := n.cfg.UpdateInterval
		if n.ml.NumMembers() <= 1 {
			wait = n.tryJoin(&backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// tryJoin makes one join attempt and returns how long to wait before
// looking again, advancing *backoff on failure and resetting it on
// success.
func (n *Node) tryJoin(backoff *time.Duration) time.Duration {
	joined, err := n.ml.Join(n.cfg.Join)
	if joined > 0 {
		n.log.Info("gossip joined", "contacted", joined)
		*backoff = joinBackoffMin
		return n.cfg.UpdateInterval
	}
	level := slog.LevelDebug
	if *backoff == joinBackoffMin {
		level = slog.LevelInfo // the first failure of a run of them
	}
	n.log.Log(context.Background(), level, "gossip join failed; retrying", "join", n.cfg.Join, "err", err, "retry_in", *backoff)
	wait := *backoff
	*backoff = min(2**backoff, joinBackoffMax)
	return wait
}

// updateLoop re-reads the local Meta every UpdateInterval and gossips it
// when it changed, until ctx (ended by Close) is done.
func (n *Node) updateLoop(ctx context.Context) {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.UpdateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n.refreshMeta()
		}
	}
}

// refreshMeta publishes the current Meta if it changed.
func (n *Node) refreshMeta() {
	meta, err := encodeMeta(n.cfg.Meta())
	if err != nil {
		n.log.Error("gossip: not publishing meta", "err", err)
		return
	}
	if !n.del.set(meta) {
		return
	}
	if err := n.ml.UpdateNode(n.cfg.UpdateInterval); err != nil {
		n.log.Debug("gossip meta update not yet broadcast", "err", err)
	}
}

// encodeMeta returns m's JSON, or ErrMetaTooLarge.
func encodeMeta(m Meta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("gossip: encoding meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// delegate is the memberlist.Delegate publishing the local Meta; it
// carries no user messages or state of its own.
type delegate struct {
	mu struct {
		sync.Mutex
		meta []byte
	}
}

var _ memberlist.Delegate = (*delegate)(nil)

// set stores meta and reports whether it differs from the previous one.
func (d *delegate) set(meta []byte) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if bytes.Equal(d.mu.meta, meta) {
		return false
	}
	d.mu.meta = meta
	return true
}

// NodeMeta returns the local Meta's JSON (at most limit bytes: encodeMeta
// guarantees it for memberlist's limit).
func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.mu.meta) > limit {
		return nil
	}
	return d.mu.meta
}

// NotifyMsg ignores user messages (none are sent).
func (d *delegate) NotifyMsg([]byte) {}

// GetBroadcasts sends no user broadcasts.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState has no state to push.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState ignores remote state.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// events is the memberlist.EventDelegate that keeps a copy of every live
// member's decoded Meta. memberlist calls it with its node lock held, so
// the copy is consistent where reading memberlist's own *Node values
// after Members() returns would race with its updates.
type events struct {
	mu struct {
		sync.Mutex
		members map[string]Meta // by memberlist node name
	}
}

var _ memberlist.EventDelegate = (*events)(nil)

// NotifyJoin records a joining member.
func (e *events) NotifyJoin(n *memberlist.Node) { e.put(n) }

// NotifyUpdate records a member's new metadata.
func (e *events) NotifyUpdate(n *memberlist.Node) { e.put(n) }

// NotifyLeave forgets a dead or departed member.
func (e *events) NotifyLeave(n *memberlist.Node) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.mu.members, n.Name)
}

// put stores n's decoded Meta, or forgets n when its Meta does not decode.
func (e *events) put(n *memberlist.Node) {
	var meta Meta
	err := json.Unmarshal(n.Meta, &meta)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		delete(e.mu.members, n.Name)
		return
	}
	e.mu.members[n.Name] = meta
}

// members returns a copy of the live members' Meta.
func (e *events) members() []Meta {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Meta, 0, len(e.mu.members))
	for _, m := range e.mu.members {
		out = append(out, m)
	}
	return out
}
