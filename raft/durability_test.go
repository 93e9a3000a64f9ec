package raft_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/testwait"
	"basalt/raft"
	"basalt/raft/rafttest"
)

// checkpointAndCompact makes group's KV on host durable and lets the host
// truncate its log behind it, as a real state machine does at checkpoints.
func checkpointAndCompact(t *testing.T, c *rafttest.Cluster, host, group uint64) {
	t.Helper()
	idx, err := c.KV(host, group).Checkpoint()
	if err != nil {
		t.Fatalf("checkpoint on host %d: %v", host, err)
	}
	if err := c.Host(host).Compact(ctxT(t, waitLong), group, idx); err != nil {
		t.Fatalf("compact on host %d: %v", host, err)
	}
}

func TestRestartFromDisk(t *testing.T) {
	dirs := map[uint64]string{1: t.TempDir(), 2: t.TempDir(), 3: t.TempDir()}
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{
		NewFS: func() vfs.FS { return vfs.Default },
		Configure: func(cfg *raft.Config) {
			cfg.Dir = dirs[cfg.HostID]
			cfg.Factory = kvOnDisk(cfg, dirs[cfg.HostID], cfg.Factory)
		},
	})
	c.CreateGroup(1, 1, 2, 3)
	c.CreateGroup(2, 1, 2, 3)
	want1 := proposeN(t, c, 1, "a", 30)
	want2 := proposeN(t, c, 2, "b", 30)
	c.WaitConverged(1, want1, waitLong, 1, 2, 3)
	checkpointAndCompact(t, c, 1, 1) // one host recovers from a checkpoint plus log
	for _, h := range []uint64{1, 2, 3} {
		c.Stop(h)
	}
	for _, h := range []uint64{1, 2, 3} {
		c.Start(h)
	}
	for _, h := range []uint64{1, 2, 3} {
		if got := c.Host(h).Groups(); !slices.Equal(got, []uint64{1, 2}) {
			t.Fatalf("host %d brought back groups %v, want [1 2]", h, got)
		}
	}
	c.WaitConverged(1, want1, waitLong, 1, 2, 3)
	c.WaitConverged(2, want2, waitLong, 1, 2, 3)
	more := proposeN(t, c, 1, "c", 10)
	c.WaitConverged(1, merge(want1, more), waitLong, 1, 2, 3)
}

// kvOnDisk keeps KV checkpoints in dir on the real filesystem.
func kvOnDisk(cfg *raft.Config, dir string, wrapped raft.Factory) raft.Factory {
	return func(group uint64) (raft.StateMachine, error) {
		sm, err := wrapped(group) // registers the KV with the cluster
		if err != nil {
			return nil, err
		}
		kv := sm.(*rafttest.KV)
		*kv = *rafttest.NewKV(vfs.Default, fmt.Sprintf("%s/kv-%d.json", dir, group))
		return kv, nil
	}
}

func TestSnapshotCatchUpAfterCompaction(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	base := proposeN(t, c, 1, "a", 10)
	c.WaitConverged(1, base, waitLong, 1, 2, 3)
	leader := c.WaitLeader(1, waitLong)
	down := leader%3 + 1
	c.Stop(down)
	more := proposeN(t, c, 1, "b", 60)
	for _, h := range []uint64{1, 2, 3} {
		if h != down {
			checkpointAndCompact(t, c, h, 1)
		}
	}
	st, err := c.Host(leader).Status(ctxT(t, waitLong), 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.FirstIndex < 40 {
		t.Fatalf("leader log starts at %d: compaction did not happen", st.FirstIndex)
	}
	c.Start(down)
	all := merge(base, more)
	c.WaitConverged(1, all, waitLong, 1, 2, 3)
	st, err = c.Host(down).Status(ctxT(t, waitLong), 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.FirstIndex < 40 {
		t.Fatalf("restarted host's log starts at %d: it did not catch up by snapshot", st.FirstIndex)
	}
	// The restored replica keeps working as a normal member.
	final := proposeN(t, c, 1, "c", 10)
	c.WaitConverged(1, merge(all, final), waitLong, 1, 2, 3)
}

func TestMembershipAndLeadershipTransfer(t *testing.T) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3, 4}, rafttest.Options{})
	c.CreateGroup(1, 1, 2, 3)
	base := proposeN(t, c, 1, "a", 40)
	c.WaitConverged(1, base, waitLong, 1, 2, 3)
	for _, h := range []uint64{1, 2, 3} {
		checkpointAndCompact(t, c, h, 1) // the learner must catch up by snapshot
	}
	ctx := ctxT(t, waitLong)
	leader := c.WaitLeader(1, waitLong)
	if err := c.Host(4).CreateGroup(ctx, 1, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Host(leader).AddLearner(ctx, 1, 4); err != nil {
		t.Fatalf("add learner: %v", err)
	}
	c.WaitConverged(1, base, waitLong, 4)
	st := status(t, c, leader, 1)
	if !slices.Equal(st.Learners, []uint64{4}) || !slices.Equal(st.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("after add learner: voters %v learners %v", st.Voters, st.Learners)
	}
	if err := c.Host(leader).PromoteLearner(ctx, 1, 4); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if err := c.Host(leader).TransferLeadership(ctx, 1, 4); err != nil {
		t.Fatalf("transfer to 4: %v", err)
	}
	if l := c.WaitLeader(1, waitLong); l != 4 {
		t.Fatalf("leader is %d after transfer to 4", l)
	}
	removed := uint64(1)
	if err := c.Host(4).RemoveMember(ctx, 1, removed); err != nil {
		t.Fatalf("remove: %v", err)
	}
	st = status(t, c, 4, 1)
	if !slices.Equal(st.Voters, []uint64{2, 3, 4}) || len(st.Learners) != 0 {
		t.Fatalf("after remove: voters %v learners %v", st.Voters, st.Learners)
	}
	if err := c.Host(removed).DestroyGroup(ctx, 1); err != nil {
		t.Fatalf("destroy on removed host: %v", err)
	}
	c.Stop(removed) // the group must not need it any more
	more := proposeN(t, c, 1, "b", 10)
	c.WaitConverged(1, merge(base, more), waitLong, 2, 3, 4)
	c.Start(removed)
	if g := c.Host(removed).Groups(); len(g) != 0 {
		t.Fatalf("destroyed group came back on restart: %v", g)
	}
}

func status(t *testing.T, c *rafttest.Cluster, host, group uint64) raft.GroupStatus {
	t.Helper()
	st, err := c.Host(host).Status(ctxT(t, waitLong), group)
	if err != nil {
		t.Fatalf("status of group %d on host %d: %v", group, host, err)
	}
	return st
}

func TestThousandGroups(t *testing.T) {
	const groups = 1000
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{
		Configure: func(cfg *raft.Config) { cfg.TickInterval = 50 * time.Millisecond },
	})
	start := time.Now()
	for g := uint64(1); g <= groups; g++ {
		c.CreateGroup(g, 1, 2, 3)
	}
	t.Logf("created in %v", time.Since(start))
	leaders := map[uint64]int{}
	c.Eventually(60*time.Second, func() error {
		clear(leaders)
		for g := uint64(1); g <= groups; g++ {
			l := c.Leader(g)
			if l == 0 {
				return fmt.Errorf("group %d has no leader", g)
			}
			leaders[l]++
		}
		return nil
	})
	t.Logf("leaders per host: %v after %v", leaders, time.Since(start))
	var wg sync.WaitGroup
	errs := make(chan error, groups)
	for g := uint64(1); g <= groups; g++ {
		wg.Go(func() {
			if _, err := c.Propose(ctxT(t, 60*time.Second), g, fmt.Sprintf("g=%d", g)); err != nil {
				errs <- fmt.Errorf("group %d: %w", g, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("proposed after %v", time.Since(start))
	for g := uint64(1); g <= groups; g++ {
		c.WaitConverged(g, map[string]string{"g": fmt.Sprint(g)}, waitLong, 1, 2, 3)
	}
}

// sameApplied reports whether every replica of groups 1 and 2 has applied
// up to the same index.
func sameApplied(c *rafttest.Cluster) error {
	for g := uint64(1); g <= 2; g++ {
		a := c.KV(1, g).Applied()
		for _, h := range []uint64{2, 3} {
			if b := c.KV(h, g).Applied(); b != a {
				return fmt.Errorf("group %d: host 1 applied %d, host %d applied %d", g, a, h, b)
			}
		}
	}
	return nil
}

// noDoubleApply checks that no replica re-applied, after the restart, a
// command its checkpoint already contained (every key is written once).
func noDoubleApply(t *testing.T, c *rafttest.Cluster) {
	t.Helper()
	for _, h := range []uint64{1, 2, 3} {
		for g := uint64(1); g <= 2; g++ {
			opened := c.KV(h, g).Opened()
			for _, cmd := range c.KV(h, g).Log() {
				k, _, _ := strings.Cut(cmd, "=")
				if _, ok := opened[k]; ok {
					t.Fatalf("host %d group %d applied %q again after restart", h, g, cmd)
				}
			}
		}
	}
}

// TestCrashLosesOnlyUnacknowledged crashes all three hosts at once, keeping
// only what each had synced (round 0), or that plus a random 40% or 80% of
// the rest, and checks that every acknowledged write survives and that no
// replica applies an entry twice.
func TestCrashLosesOnlyUnacknowledged(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) { crashRound(t, int64(round)) })
	}
}

func crashRound(t *testing.T, seed int64) {
	c := rafttest.NewCluster(t, []uint64{1, 2, 3}, rafttest.Options{
		NewFS: func() vfs.FS { return vfs.NewCrashableMem() },
	})
	c.CreateGroup(1, 1, 2, 3)
	c.CreateGroup(2, 1, 2, 3)
	w := startAckedWriters(c)
	// Checkpoints and compaction race with the writes, as in production.
	testwait.For(t, waitLong, "writes before the checkpoint", w.atLeast(150))
	for _, h := range []uint64{1, 2, 3} {
		checkpointAndCompact(t, c, h, 1)
	}
	testwait.For(t, waitLong, "writes after the checkpoint", w.atLeast(300))
	if seed == 0 {
		// Quiesce first: the last commit-index updates are then written
		// without sync, while the checkpoint taken after them is durable.
		// Replay after the crash must not apply those entries twice.
		w.stop()
		testwait.For(t, waitLong, "every replica to apply everything", func() error { return sameApplied(c) })
	}
	checkpointAll(t, c)
	acked := crashAll(c, w, seed)
	total := waitAcknowledged(t, c, acked)
	if total < 20 {
		t.Fatalf("only %d writes acknowledged before the crash: test proves little", total)
	}
	writeAfterCrash(t, c)
	noDoubleApply(t, c)
	t.Logf("%d acknowledged writes survived the crash", total)
}

// ackedWriters propose distinct writes to groups 1 and 2 from six
// goroutines and remember which were acknowledged.
type ackedWriters struct {
	mu     sync.Mutex
	acked  map[uint64][]string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startAckedWriters(c *rafttest.Cluster) *ackedWriters {
	ctx, cancel := context.WithCancel(context.Background())
	w := &ackedWriters{acked: map[uint64][]string{}, cancel: cancel}
	for n := range 6 {
		w.wg.Go(func() { w.write(ctx, c, n) })
	}
	return w
}

func (w *ackedWriters) write(ctx context.Context, c *rafttest.Cluster, n int) {
	group := uint64(n%2 + 1)
	for i := 0; ctx.Err() == nil; i++ {
		k := fmt.Sprintf("w%d-%d", n, i)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.Propose(pctx, group, k+"=v")
		cancel()
		if err == nil {
			w.mu.Lock()
			w.acked[group] = append(w.acked[group], k)
			w.mu.Unlock()
		}
	}
}

func (w *ackedWriters) stop() { w.cancel(); w.wg.Wait() }

func (w *ackedWriters) atLeast(n int) func() error {
	return func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if got := len(w.acked[1]) + len(w.acked[2]); got < n {
			return fmt.Errorf("%d writes acknowledged, want %d", got, n)
		}
		return nil
	}
}

func checkpointAll(t *testing.T, c *rafttest.Cluster) {
	t.Helper()
	for _, h := range []uint64{1, 2, 3} {
		for g := uint64(1); g <= 2; g++ {
			if _, err := c.KV(h, g).Checkpoint(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// crashAll takes a crash image of every host at one instant (keeping the
// synced data and seed*40% of the rest), freezes the acknowledged set at
// that instant, and restarts the hosts on the images.
func crashAll(c *rafttest.Cluster, w *ackedWriters, seed int64) map[uint64][]string {
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	clones := map[uint64]vfs.FS{}
	w.mu.Lock()
	for _, h := range []uint64{1, 2, 3} {
		clones[h] = c.FS(h).(*vfs.MemFS).CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: int(seed) * 40, RNG: rng})
	}
	acked := map[uint64][]string{1: slices.Clone(w.acked[1]), 2: slices.Clone(w.acked[2])}
	w.mu.Unlock()
	w.stop()
	for _, h := range []uint64{1, 2, 3} {
		c.Stop(h)
		c.SetFS(h, clones[h])
	}
	for _, h := range []uint64{1, 2, 3} {
		c.Start(h)
	}
	return acked
}

// waitAcknowledged waits until every replica holds every acknowledged
// write, and returns how many there were.
func waitAcknowledged(t *testing.T, c *rafttest.Cluster, acked map[uint64][]string) int {
	t.Helper()
	total := 0
	for g := uint64(1); g <= 2; g++ {
		total += len(acked[g])
		c.Eventually(waitLong, func() error {
			for _, h := range []uint64{1, 2, 3} {
				data := c.KV(h, g).Data()
				for _, k := range acked[g] {
					if _, ok := data[k]; !ok {
						return fmt.Errorf("host %d group %d lost acknowledged %s", h, g, k)
					}
				}
			}
			return nil
		})
	}
	return total
}

// writeAfterCrash checks the groups keep working, and lets every replica
// catch up with the log (re-applying nothing) before the double-apply
// check.
func writeAfterCrash(t *testing.T, c *rafttest.Cluster) {
	t.Helper()
	for g := uint64(1); g <= 2; g++ {
		if _, err := c.Propose(ctxT(t, waitLong), g, "after=crash"); err != nil {
			t.Fatalf("group %d after the crash: %v", g, err)
		}
		c.Eventually(waitLong, func() error {
			for _, h := range []uint64{1, 2, 3} {
				if _, ok := c.KV(h, g).Get("after"); !ok {
					return fmt.Errorf("host %d group %d has not applied the post-crash write", h, g)
				}
			}
			return nil
		})
	}
}
