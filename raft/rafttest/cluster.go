package rafttest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/simnet"
	"basalt/internal/testwait"
	"basalt/raft"
)

// Options configures a Cluster.
type Options struct {
	// Seed seeds the simulated network's fault decisions. Zero: time-based;
	// the seed is logged so a failure can be replayed.
	Seed int64
	// NewFS returns a fresh filesystem for a host. Default vfs.NewMem.
	NewFS func() vfs.FS
	// Configure adjusts every host's Config (after the cluster's defaults:
	// 10ms ticks, small log retention).
	Configure func(*raft.Config)
	// Logger for the hosts. Default: discard below Warn.
	Logger *slog.Logger
	// Factory, if set, creates the state machines instead of KV (then
	// Cluster.KV returns nil). fs is the host's filesystem.
	Factory func(host, group uint64, fs vfs.FS) (raft.StateMachine, error)
}

// Cluster is a set of raft hosts in one process, connected by a simnet
// network, each with its own filesystem, running KV state machines.
type Cluster struct {
	t    testing.TB
	opts Options
	Net  *simnet.Network

	mu    sync.Mutex
	hosts map[uint64]*raft.Host
	fs    map[uint64]vfs.FS
	kvs   map[uint64]map[uint64]*KV // host -> group -> current KV
}

// NewCluster starts hosts with the given IDs. It stops them at test end.
func NewCluster(t testing.TB, ids []uint64, opts Options) *Cluster {
	if opts.Seed == 0 {
		opts.Seed = time.Now().UnixNano()
	}
	if opts.NewFS == nil {
		opts.NewFS = func() vfs.FS { return vfs.NewMem() }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	t.Logf("rafttest: simnet seed %d", opts.Seed)
	c := &Cluster{
		t: t, opts: opts, Net: simnet.New(opts.Seed),
		hosts: map[uint64]*raft.Host{}, fs: map[uint64]vfs.FS{}, kvs: map[uint64]map[uint64]*KV{},
	}
	for _, id := range ids {
		c.fs[id] = opts.NewFS()
		c.Start(id)
	}
	t.Cleanup(c.Close)
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// Config returns the Config host id is started with.
func (c *Cluster) Config(id uint64) raft.Config {
	cfg := raft.DefaultConfig()
	cfg.HostID = id
	cfg.Dir = "/raft"
	cfg.FS = c.FS(id)
	cfg.Logger = c.opts.Logger
	cfg.TickInterval = 10 * time.Millisecond
	cfg.LogRetainEntries = 5
	cfg.Transport = c.Net.Endpoint(id)
	cfg.Factory = func(group uint64) (raft.StateMachine, error) {
		if c.opts.Factory != nil {
			return c.opts.Factory(id, group, cfg.FS)
		}
		kv := NewKV(cfg.FS, fmt.Sprintf("/kv-%d.json", group))
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.kvs[id] == nil {
			c.kvs[id] = map[uint64]*KV{}
		}
		c.kvs[id][group] = kv
		return kv, nil
	}
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	return cfg
}

// Start starts (or restarts) host id on its filesystem.
func (c *Cluster) Start(id uint64) *raft.Host {
	c.t.Helper()
	cfg := c.Config(id)
	h, err := raft.NewHost(cfg)
	if err != nil {
		c.t.Fatalf("starting host %d: %v", id, err)
	}
	c.Net.Endpoint(id).SetHandler(h)
	c.Net.Reconnect(id)
	c.mu.Lock()
	c.hosts[id] = h
	c.mu.Unlock()
	return h
}

// Stop stops host id cleanly and disconnects it from the network.
func (c *Cluster) Stop(id uint64) {
	c.t.Helper()
	c.mu.Lock()
	h := c.hosts[id]
	delete(c.hosts, id)
	c.mu.Unlock()
	c.Net.Disconnect(id)
	if h != nil {
		if err := h.Stop(); err != nil {
			c.t.Errorf("stopping host %d: %v", id, err)
		}
	}
}

// SetFS replaces host id's filesystem (for a stopped host: crash tests
// install a crash clone).
func (c *Cluster) SetFS(id uint64, fs vfs.FS) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fs[id] = fs
}

// FS returns host id's filesystem.
func (c *Cluster) FS(id uint64) vfs.FS {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fs[id]
}

// Host returns running host id, or nil.
func (c *Cluster) Host(id uint64) *raft.Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hosts[id]
}

// KV returns the state machine of group on host id.
func (c *Cluster) KV(id, group uint64) *KV {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kvs[id][group]
}

// Close stops every host and the network.
func (c *Cluster) Close() {
	c.mu.Lock()
	var ids []uint64
	for id := range c.hosts {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.Stop(id)
	}
	c.Net.Close()
}

// CreateGroup creates group on each of hosts with hosts as voters.
func (c *Cluster) CreateGroup(group uint64, hosts ...uint64) {
	c.t.Helper()
	for _, id := range hosts {
		if err := c.Host(id).CreateGroup(context.Background(), group, hosts); err != nil {
			c.t.Fatalf("creating group %d on host %d: %v", group, id, err)
		}
	}
}

// Leader returns the host that leads group, as agreed by every running
// host that has the group, or 0.
func (c *Cluster) Leader(group uint64) uint64 {
	var leader uint64
	for _, id := range c.running() {
		l, _, err := c.Host(id).Leader(group)
		if err != nil {
			continue // not a member here
		}
		if l == 0 || (leader != 0 && l != leader) {
			return 0
		}
		leader = l
	}
	if leader != 0 && c.Host(leader) == nil {
		return 0
	}
	return leader
}

func (c *Cluster) running() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]uint64, 0, len(c.hosts))
	for id := range c.hosts {
		ids = append(ids, id)
	}
	return ids
}

// WaitLeader waits until group has a leader all running members agree on.
func (c *Cluster) WaitLeader(group uint64, timeout time.Duration) uint64 {
	c.t.Helper()
	var leader uint64
	c.Eventually(timeout, func() error {
		if leader = c.Leader(group); leader == 0 {
			return fmt.Errorf("group %d has no agreed leader", group)
		}
		return nil
	})
	return leader
}

// Propose proposes cmd to group through whichever host leads it, retrying
// on leader changes until ctx expires. It returns the applied index.
func (c *Cluster) Propose(ctx context.Context, group uint64, cmd string) (uint64, error) {
	for {
		leader := c.Leader(group)
		if leader != 0 {
			v, err := c.Host(leader).Propose(ctx, group, []byte(cmd))
			if err == nil {
				index, _ := v.(uint64) // KV's result; other state machines: 0
				return index, nil
			}
			if !retryable(err) {
				return 0, err
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func retryable(err error) bool {
	var nl *raft.NotLeaderError
	return errors.As(err, &nl) || errors.Is(err, raft.ErrProposalDropped) ||
		errors.Is(err, raft.ErrStopped) || errors.Is(err, raft.ErrProposalUnknown)
}

// Eventually retries cond until it returns nil or timeout passes.
func (c *Cluster) Eventually(timeout time.Duration, cond func() error) {
	c.t.Helper()
	testwait.For(c.t, timeout, fmt.Sprintf("a condition (simnet seed %d)", c.opts.Seed), cond)
}

// WaitConverged waits until group's KV on every given host holds want.
func (c *Cluster) WaitConverged(group uint64, want map[string]string, timeout time.Duration, hosts ...uint64) {
	c.t.Helper()
	c.Eventually(timeout, func() error {
		for _, id := range hosts {
			kv := c.KV(id, group)
			if kv == nil {
				return fmt.Errorf("host %d has no group %d", id, group)
			}
			if err := sameData(kv.Data(), want); err != nil {
				return fmt.Errorf("host %d group %d: %w", id, group, err)
			}
		}
		return nil
	})
}

func sameData(got, want map[string]string) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Errorf("key %q = %q, want %q", k, got[k], v)
		}
	}
	return nil
}
