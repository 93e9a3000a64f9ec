package raft_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"basalt/internal/testwait"
	"basalt/raft"
	"basalt/raft/rafttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLong = 20 * time.Second

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// proposeN proposes n distinct commands with the given prefix and returns
// what the KV must hold afterwards.
func proposeN(t *testing.T, c *rafttest.Cluster, group uint64, prefix string, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := range n {
		k, v := fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("v%d", i)
		if _, err := c.Propose(ctxT(t, waitLong), group, k+"="+v); err != nil {
			t.Fatalf("proposing %s: %v", k, err)
		}
		want[k] = v
	}
	return want
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// sameLogs checks that every replica applied the same commands in the same
// order (replicas restored from a snapshot hold a suffix of the others').
func sameLogs(t *testing.T, c *rafttest.Cluster, group uint64, hosts ...uint64) {
	t.Helper()
	var ref []string
	for _, h := range hosts {
		if l := c.KV(h, group).Log(); len(l) > len(ref) {
			ref = l
		}
	}
	for _, h := range hosts {
		l := c.KV(h, group).Log()
		if !slices.Equal(l, ref[len(ref)-len(l):]) {
			t.Fatalf("host %d applied %v, not a suffix of %v", h, l, ref)
		}
	}
}

func TestElectionAndReplication(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	leader := c.WaitLeader(1, waitLong)
	if leader < 1 || leader > 3 {
		t.Fatalf("leader %d is not a member", leader)
	}
	want := proposeN(t, c, 1, "k", 50)
	c.WaitConverged(1, want, waitLong, 1, 2, 3)
	sameLogs(t, c, 1, 1, 2, 3)
}

func TestProposeOnFollowerNamesLeader(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	leader := c.WaitLeader(1, waitLong)
	follower := leader%3 + 1
	_, err := c.Host(follower).Propose(ctxT(t, waitLong), 1, []byte("a=b"))
	var nl *raft.NotLeaderError
	if !errors.As(err, &nl) || nl.Leader != leader {
		t.Fatalf("propose on follower: got %v, want NotLeaderError naming %d", err, leader)
	}
	if err := c.Host(follower).ReadIndex(ctxT(t, waitLong), 1); !errors.As(err, &nl) {
		t.Fatalf("read on follower: got %v, want NotLeaderError", err)
	}
	if _, err := c.Host(leader).Propose(ctxT(t, waitLong), 99, []byte("a=b")); !errors.Is(err, raft.ErrGroupNotFound) {
		t.Fatalf("propose to unknown group: got %v, want ErrGroupNotFound", err)
	}
	_, err = c.Host(leader).Propose(ctxT(t, waitLong), 1, []byte("no-equals-sign"))
	if !errors.Is(err, rafttest.ErrBadCommand) {
		t.Fatalf("bad command: got %v, want the state machine's ErrBadCommand", err)
	}
}

func TestReadIndexSeesAcknowledgedWrites(t *testing.T) {
	for _, lease := range []bool{true, false} {
		t.Run(fmt.Sprintf("lease=%v", lease), func(t *testing.T) {
			c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{
				Configure: func(cfg *raft.Config) { cfg.LeaseReads = lease },
			})
			c.CreateGroup(1, 1, 2, 3)
			for i := range 20 {
				v := fmt.Sprint(i)
				if _, err := c.Propose(ctxT(t, waitLong), 1, "x="+v); err != nil {
					t.Fatal(err)
				}
				leader := c.WaitLeader(1, waitLong)
				if err := c.Host(leader).ReadIndex(ctxT(t, waitLong), 1); err != nil {
					t.Fatalf("read index: %v", err)
				}
				if got, _ := c.KV(leader, 1).Get("x"); got != v {
					t.Fatalf("read after acknowledged write %s returned %q", v, got)
				}
			}
		})
	}
}

func TestLeaderCrashReelection(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	old := c.WaitLeader(1, waitLong)
	before := proposeN(t, c, 1, "a", 20)
	c.Stop(old)
	start := time.Now()
	leader := c.WaitLeader(1, waitLong)
	if leader == old {
		t.Fatalf("stopped host %d still leads", old)
	}
	t.Logf("new leader %d after %v", leader, time.Since(start))
	after := proposeN(t, c, 1, "b", 20)
	c.Start(old)
	all := merge(before, after)
	c.WaitConverged(1, all, waitLong, 1, 2, 3)
	sameLogs(t, c, 1, 1, 2, 3)
}

func TestMinorityPartitionMakesNoProgress(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	old := c.WaitLeader(1, waitLong)
	base := proposeN(t, c, 1, "a", 10)
	c.WaitConverged(1, base, waitLong, 1, 2, 3)
	var rest []uint64
	for _, h := range []uint64{1, 2, 3} {
		if h != old {
			rest = append(rest, h)
		}
	}
	c.Net.Partition([]uint64{old}, rest)

	// The isolated old leader cannot commit: its proposal times out (or it
	// steps down thanks to CheckQuorum and refuses).
	_, err := c.Host(old).Propose(ctxT(t, 500*time.Millisecond), 1, []byte("lost=1"))
	if err == nil {
		t.Fatal("minority leader committed a proposal")
	}
	// The majority elects a leader and makes progress.
	c.Eventually(waitLong, func() error {
		for _, h := range rest {
			if l, _, _ := c.Host(h).Leader(1); l != 0 && l != old {
				return nil
			}
		}
		return errors.New("majority has no new leader")
	})
	more := map[string]string{}
	for i := range 10 {
		k := fmt.Sprintf("b%d", i)
		proposeVia(t, c, rest, 1, k+"=x")
		more[k] = "x"
	}
	if got, ok := c.KV(old, 1).Get("b0"); ok {
		t.Fatalf("partitioned host applied %q during the partition", got)
	}
	c.Net.Heal()
	c.WaitConverged(1, merge(base, more), waitLong, 1, 2, 3)
	for _, h := range []uint64{1, 2, 3} {
		if _, ok := c.KV(h, 1).Get("lost"); ok {
			t.Fatalf("host %d applied the minority leader's unacknowledged write", h)
		}
	}
	sameLogs(t, c, 1, 1, 2, 3)
}

// proposeVia proposes through whichever of hosts leads group, retrying
// until it is applied.
func proposeVia(t *testing.T, c *rafttest.Cluster, hosts []uint64, group uint64, cmd string) {
	t.Helper()
	testwait.For(t, waitLong, fmt.Sprintf("%q applied via %v", cmd, hosts), func() error {
		for _, h := range hosts {
			if l, _, _ := c.Host(h).Leader(group); l == h {
				_, err := c.Host(h).Propose(ctxT(t, waitLong), group, []byte(cmd))
				return err
			}
		}
		return errors.New("none of them leads")
	})
}

func TestReorderDuplicateDropSafety(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	c.WaitLeader(1, waitLong)
	c.Net.SetDropRate(0.1)
	c.Net.SetDuplicateRate(0.2)
	c.Net.SetDelay(0, 15*time.Millisecond)
	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				k := fmt.Sprintf("w%d-%d", w, i)
				if _, err := c.Propose(ctxT(t, waitLong), 1, k+"=v"); err == nil {
					mu.Lock()
					acked[k] = "v"
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(acked) < 150 {
		t.Fatalf("only %d of 200 proposals acknowledged", len(acked))
	}
	c.Net.SetDropRate(0)
	c.Net.SetDuplicateRate(0)
	c.Net.SetDelay(0, 0)
	// Every acknowledged write is on every replica, nothing unacknowledged
	// beyond the writes that timed out, and no command applied twice.
	c.Eventually(waitLong, func() error {
		for _, h := range []uint64{1, 2, 3} {
			data := c.KV(h, 1).Data()
			for k := range acked {
				if _, ok := data[k]; !ok {
					return fmt.Errorf("host %d misses acknowledged %s", h, k)
				}
			}
		}
		return nil
	})
	for _, h := range []uint64{1, 2, 3} {
		seen := map[string]bool{}
		for _, cmd := range c.KV(h, 1).Log() {
			if seen[cmd] {
				t.Fatalf("host %d applied %q twice", h, cmd)
			}
			seen[cmd] = true
		}
	}
	sameLogs(t, c, 1, 1, 2, 3)
}

func TestBadInputGetsClearErrors(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	leader := c.WaitLeader(1, waitLong)
	h := c.Host(leader)
	ctx := ctxT(t, waitLong)
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"create twice", h.CreateGroup(ctx, 1, []uint64{1, 2, 3}), raft.ErrGroupExists},
		{"group 0", h.CreateGroup(ctx, 0, []uint64{1, 2, 3}), raft.ErrInvalidConfig},
		{"voters without this host", h.CreateGroup(ctx, 7, []uint64{98, 99}), raft.ErrInvalidConfig},
		{"destroy unknown", h.DestroyGroup(ctx, 99), raft.ErrGroupNotFound},
		{"compact unknown", h.Compact(ctx, 99, 10), raft.ErrGroupNotFound},
		{"read unknown", h.ReadIndex(ctx, 99), raft.ErrGroupNotFound},
		{"propose too large", proposeErr(h, ctx, 1, make([]byte, 4<<20)), raft.ErrProposalTooLarge},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if _, err := h.Status(ctx, 99); !errors.Is(err, raft.ErrGroupNotFound) {
		t.Errorf("status of unknown group: got %v", err)
	}
	// None of that disturbed the group.
	want := proposeN(t, c, 1, "k", 5)
	c.WaitConverged(1, want, waitLong, 1, 2, 3)
	if _, err := raft.NewHost(raft.Config{HostID: 1}); !errors.Is(err, raft.ErrInvalidConfig) {
		t.Errorf("host without Dir: got %v, want ErrInvalidConfig", err)
	}
	h3 := c.Host(3)
	c.Stop(3)
	if _, err := h3.Propose(ctx, 1, []byte("a=b")); !errors.Is(err, raft.ErrStopped) {
		t.Errorf("propose on a stopped host: got %v, want ErrStopped", err)
	}
}

func proposeErr(h *raft.Host, ctx context.Context, group uint64, data []byte) error {
	_, err := h.Propose(ctx, group, data)
	return err
}
