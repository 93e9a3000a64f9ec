package e2e_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"basalt/internal/testnet"
)

// startReplicatedRSS starts three masters replicating their state through
// raft (each with its own data directory) and n workers gossiping with all
// of them, and waits until the masters see every worker. c.masterRPC is
// the comma-separated list of the three masters, as a client is given it.
func startReplicatedRSS(t *testing.T, n int) *rssCluster {
	c := &rssCluster{t: t, dir: t.TempDir()}
	t.Cleanup(c.shutdown)
	const masters = 3
	var rpcs, gossips, peers []string
	for i := range masters {
		rpcs = append(rpcs, testnet.FreeAddr(t))
		gossips = append(gossips, testnet.FreeAddr(t))
		peers = append(peers, fmt.Sprintf("%d=%s", i+1, rpcs[i]))
	}
	c.masterRPC, c.gossip = strings.Join(rpcs, ","), strings.Join(gossips, ",")
	for i := range masters {
		httpAddr := testnet.FreeAddr(t)
		c.masters = append(c.masters, &proc{t: t, name: "basalt-rss-master", http: httpAddr,
			log: filepath.Join(c.dir, fmt.Sprintf("master%d.log", i+1)), args: []string{
				"--listen", rpcs[i], "--http", httpAddr, "--gossip-bind", gossips[i], "--gossip-join", c.gossip,
				"--raft-id", fmt.Sprint(i + 1), "--raft-peers", strings.Join(peers, ","),
				"--data", filepath.Join(c.dir, fmt.Sprintf("master%d", i+1)),
				"--checkpoint-interval", "1s",
			}})
	}
	for _, m := range c.masters {
		m.start()
	}
	for i := range n {
		c.workers = append(c.workers, c.newWorker(i))
		c.workers[i].start()
	}
	c.waitWorkers(n)
	return c
}

// leader waits until exactly one running master (other than those in
// except) reports that it leads, and returns its index.
func (c *rssCluster) leader(except ...int) int {
	c.t.Helper()
	var idx int
	waitFor(c.t, 30*time.Second, "one master leading", func() error {
		var leading []int
		for i, m := range c.masters {
			if slices.Contains(except, i) {
				continue
			}
			if v, err := m.metric("basalt_rss_master_leader"); err == nil && v == 1 {
				leading = append(leading, i)
			}
		}
		if len(leading) != 1 {
			return fmt.Errorf("masters leading: %v", leading)
		}
		idx = leading[0]
		return nil
	})
	return idx
}

// TestShuffleMasterFailover: three replicated masters. The leader is
// killed with SIGKILL while the maps push and report their ends; the maps
// finish against the new leader and the shuffle commits. That leader is
// killed too, leaving one master, and the first one is restarted on its
// data: it catches up from the survivor's log, the two form a quorum, and
// every partition reads back exactly, so no registration, map end or
// commit acknowledged by a dead leader was lost. A second shuffle
// registered after both failovers works as well.
func TestShuffleMasterFailover(t *testing.T) {
	c := startReplicatedRSS(t, 3)
	a := c.app(t, "failover")
	j := job{maps: 60, partitions: 50, recordsPerMap: 1000}
	j.register(t, a, 1)
	first := c.leader()
	var finished atomic.Int64
	done := make(chan error, 1)
	go func() { done <- j.runMapsCounting(t.Context(), a, 1, 4, &finished) }()
	waitFor(t, 60*time.Second, "a sixth of the maps finished", func() error {
		if n := finished.Load(); n < int64(j.maps/6) {
			return fmt.Errorf("%d maps finished", n)
		}
		return nil
	})
	c.masters[first].kill9()
	if n := finished.Load(); n == int64(j.maps) {
		t.Fatalf("every map had finished before the leader was killed; the test proves nothing")
	}
	if err := <-done; err != nil {
		t.Fatalf("maps across the failover: %v", err)
	}
	second := c.leader(first)
	if err := a.CommitShuffle(t.Context(), 1); err != nil {
		t.Fatalf("commit on the new leader: %v", err)
	}
	c.masters[second].kill9()
	c.masters[first].start()
	j.checkOutput(t, a, 1, 8)
	c.leader(second)

	// The master that was restarted holds the whole State too (it applied
	// the commit it missed): its own count of shuffles is 1.
	waitMetric(t, c.masters[first], "basalt_rss_master_active_shuffles", 1)
	small := job{maps: 10, partitions: 10, recordsPerMap: 200}
	small.run(t, a, 2, 4)
}

// pause stops p with SIGSTOP (it holds its connections but answers
// nothing) until resume.
func (p *proc) pause()  { p.sendSignal(syscall.SIGSTOP) }
func (p *proc) resume() { p.sendSignal(syscall.SIGCONT) }

func (p *proc) sendSignal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// TestShuffleMasterFailoverFinishesDeletions: an application ends while
// its workers do not answer, so the leader cannot delete its files; the
// leader is killed. The new leader finds the deletion pending in the
// replicated State and carries it out once the workers answer again: no
// shuffle file is left behind.
func TestShuffleMasterFailoverFinishesDeletions(t *testing.T) {
	c := startReplicatedRSS(t, 2)
	a := c.app(t, "cleanup")
	j := job{maps: 8, partitions: 8, recordsPerMap: 500}
	j.run(t, a, 1, 4)
	appDirs := []string{filepath.Join(c.dir, "worker0", "apps", "cleanup"), filepath.Join(c.dir, "worker1", "apps", "cleanup")}
	for _, d := range appDirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("before the unregistration: %v", err)
		}
	}

	leader := c.leader()
	for _, w := range c.workers {
		w.pause()
	}
	if err := a.Unregister(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, c.masters[leader], "basalt_rss_master_pending_deletions", 1)
	c.masters[leader].kill9()
	for _, w := range c.workers {
		w.resume()
	}
	next := c.leader(leader)
	waitFor(t, 60*time.Second, "the application's files deleted on both workers", func() error {
		for _, d := range appDirs {
			_, err := os.Stat(d)
			if err == nil {
				return fmt.Errorf("%s still exists", d)
			}
			if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("checking %s: %w", d, err)
			}
		}
		return nil
	})
	waitMetric(t, c.masters[next], "basalt_rss_master_pending_deletions", 0)
}
