package raft_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"

	"basalt/internal/testwait"
	"basalt/raft"
	"basalt/raft/grpctransport"
	"basalt/raft/rafttest"
)

// grpcNode is one host on loopback gRPC with Pebble on disk.
type grpcNode struct {
	host   *raft.Host
	tr     *grpctransport.Transport
	srv    *grpc.Server
	lis    net.Listener
	counts map[uint64]*countSM
	mu     sync.Mutex
}

// grpcCluster is hosts over real gRPC; the state machine is countSM.
type grpcCluster struct {
	tb    testing.TB
	res   *grpctransport.StaticResolver
	dirs  map[uint64]string
	nodes map[uint64]*grpcNode
	cfg   func(*raft.Config)
}

func newGRPCCluster(tb testing.TB, n int, configure func(*raft.Config)) *grpcCluster {
	c := &grpcCluster{tb: tb, res: grpctransport.NewStaticResolver(nil), dirs: map[uint64]string{}, nodes: map[uint64]*grpcNode{}, cfg: configure}
	for id := uint64(1); id <= uint64(n); id++ {
		c.dirs[id] = tb.TempDir()
		c.start(id)
	}
	tb.Cleanup(c.close)
	return c
}

func (c *grpcCluster) start(id uint64) {
	c.tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.tb.Fatal(err)
	}
	c.res.Set(id, lis.Addr().String())
	tcfg := grpctransport.DefaultConfig()
	tcfg.HostID, tcfg.Resolver = id, c.res
	tr, err := grpctransport.New(tcfg)
	if err != nil {
		c.tb.Fatal(err)
	}
	node := &grpcNode{tr: tr, lis: lis, counts: map[uint64]*countSM{}}
	cfg := raft.DefaultConfig()
	cfg.HostID, cfg.Dir, cfg.Transport = id, c.dirs[id], tr
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Factory = func(group uint64) (raft.StateMachine, error) {
		sm := &countSM{}
		node.mu.Lock()
		node.counts[group] = sm
		node.mu.Unlock()
		return sm, nil
	}
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	if node.host, err = raft.NewHost(cfg); err != nil {
		c.tb.Fatal(err)
	}
	tr.SetHandler(node.host)
	node.srv = grpc.NewServer(tr.ServerOptions()...)
	tr.Register(node.srv)
	go func() { _ = node.srv.Serve(lis) }()
	c.nodes[id] = node
}

func (c *grpcCluster) stop(id uint64) {
	n := c.nodes[id]
	delete(c.nodes, id)
	n.srv.Stop()
	if err := n.host.Stop(); err != nil {
		c.tb.Errorf("stopping host %d: %v", id, err)
	}
	_ = n.tr.Close()
}

func (c *grpcCluster) close() {
	for id := range c.nodes {
		c.stop(id)
	}
}

func (c *grpcCluster) createGroups(groups int) {
	c.tb.Helper()
	var voters []uint64
	for id := range c.nodes {
		voters = append(voters, id)
	}
	for g := uint64(1); g <= uint64(groups); g++ {
		for _, n := range c.nodes {
			if err := n.host.CreateGroup(context.Background(), g, voters); err != nil {
				c.tb.Fatal(err)
			}
		}
	}
}

// leaders waits until every group has a leader and returns them.
func (c *grpcCluster) leaders(groups int, timeout time.Duration) map[uint64]uint64 {
	c.tb.Helper()
	out := map[uint64]uint64{}
	testwait.For(c.tb, timeout, "a leader in every group", func() error {
		for g := uint64(1); g <= uint64(groups); g++ {
			if out[g] = c.runningLeader(g); out[g] == 0 {
				return fmt.Errorf("group %d has no leader", g)
			}
		}
		return nil
	})
	return out
}

// runningLeader is the leader of group g as seen by any running host, if
// that leader is running; else 0.
func (c *grpcCluster) runningLeader(g uint64) uint64 {
	for _, n := range c.nodes {
		if l, _, _ := n.host.Leader(g); l != 0 && c.nodes[l] != nil {
			return l
		}
	}
	return 0
}

// propose sends data to group's leader, following NotLeaderErrors.
func (c *grpcCluster) propose(ctx context.Context, group uint64, leader *atomic.Uint64, data []byte) error {
	for {
		n := c.nodes[leader.Load()]
		if n == nil {
			return fmt.Errorf("group %d: leader %d is not running", group, leader.Load())
		}
		_, err := n.host.Propose(ctx, group, data)
		var nl *raft.NotLeaderError
		if !errors.As(err, &nl) {
			return err
		}
		if nl.Leader != 0 {
			leader.Store(nl.Leader)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// compactAll truncates every group's log behind its applied index.
func (c *grpcCluster) compactAll(groups int) {
	for _, n := range c.nodes {
		for g := uint64(1); g <= uint64(groups); g++ {
			_ = n.host.Compact(context.Background(), g, math.MaxUint64)
		}
	}
}

// countSM counts applied entries and bytes; its state is durable at once
// (there is nothing to lose), so the log can always be compacted.
type countSM struct {
	entries atomic.Uint64
	bytes   atomic.Uint64
}

func (s *countSM) Open(context.Context) (uint64, error) { return 0, nil }

func (s *countSM) Apply(ents []raft.Entry) ([]raft.Result, error) {
	for _, e := range ents {
		if e.Type == raft.EntryNormal {
			s.entries.Add(1)
			s.bytes.Add(uint64(len(e.Data)))
		}
	}
	return make([]raft.Result, len(ents)), nil
}

func (s *countSM) Snapshot() (raft.SnapshotSource, error) { return emptySource{}, nil }

func (s *countSM) Restore(context.Context, uint64, io.Reader) error { return nil }

func (s *countSM) Close() error { return nil }

type emptySource struct{}

func (emptySource) WriteTo(context.Context, io.Writer) error { return nil }
func (emptySource) Close() error                             { return nil }

// TestGRPCClusterSurvivesHostLoss runs three hosts over real gRPC with
// Pebble on disk, kills one, keeps writing, and brings it back.
func TestGRPCClusterSurvivesHostLoss(t *testing.T) {
	c := newGRPCCluster(t, 3, func(cfg *raft.Config) { cfg.TickInterval = 20 * time.Millisecond })
	const groups = 10
	c.createGroups(groups)
	leaders := c.leaders(groups, waitLong)
	write := func(label string) {
		for g := uint64(1); g <= groups; g++ {
			var l atomic.Uint64
			l.Store(leaders[g])
			if err := c.propose(ctxT(t, waitLong), g, &l, []byte(label)); err != nil {
				t.Fatalf("%s: group %d: %v", label, g, err)
			}
			leaders[g] = l.Load()
		}
	}
	write("before")
	c.stop(2)
	leaders = c.leaders(groups, waitLong)
	write("during")
	c.start(2)
	write("after")
	testwait.For(t, waitLong, "the restarted host to catch up", func() error {
		for g := uint64(1); g <= groups; g++ {
			if n := c.nodes[2].countOf(g); n != 3 {
				return fmt.Errorf("group %d has %d entries, want 3", g, n)
			}
		}
		return nil
	})
}

func (n *grpcNode) countOf(group uint64) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sm := n.counts[group]; sm != nil {
		return sm.entries.Load()
	}
	return 0
}

// TestGRPCSnapshotCatchUp: a host that was down while the others compacted
// their logs catches up through a snapshot streamed over real gRPC, with
// Pebble and the state machines' checkpoints on disk.
func TestGRPCSnapshotCatchUp(t *testing.T) {
	var mu sync.Mutex
	kvs := map[uint64]*rafttest.KV{} // host -> KV of group 1
	c := newGRPCCluster(t, 3, func(cfg *raft.Config) {
		cfg.TickInterval = 20 * time.Millisecond
		cfg.LogRetainEntries = 5
		host, dir := cfg.HostID, cfg.Dir
		cfg.Factory = func(group uint64) (raft.StateMachine, error) {
			kv := rafttest.NewKV(vfs.Default, filepath.Join(dir, fmt.Sprintf("kv-%d.json", group)))
			mu.Lock()
			kvs[host] = kv
			mu.Unlock()
			return kv, nil
		}
	})
	kv := func(h uint64) *rafttest.KV { mu.Lock(); defer mu.Unlock(); return kvs[h] }
	c.createGroups(1)
	leaders := c.leaders(1, waitLong)
	var leader atomic.Uint64
	leader.Store(leaders[1])
	down := leader.Load()%3 + 1
	c.stop(down)
	for i := range 60 {
		if err := c.propose(ctxT(t, waitLong), 1, &leader, []byte(fmt.Sprintf("k%d=v", i))); err != nil {
			t.Fatal(err)
		}
	}
	for h, n := range c.nodes {
		idx, err := kv(h).Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.host.Compact(ctxT(t, waitLong), 1, idx); err != nil {
			t.Fatal(err)
		}
	}
	c.start(down)
	testwait.For(t, waitLong, "the restarted host to catch up", func() error {
		if n := len(kv(down).Data()); n != 60 {
			return fmt.Errorf("%d keys, want 60", n)
		}
		return nil
	})
	if got := counterValue(c.nodes[down].host, "basalt_raft_snapshots_received_total"); got < 1 {
		t.Fatalf("restarted host received %v snapshots; it should have caught up by snapshot", got)
	}
}
