package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"basalt/internal/testnet"
	rssclient "basalt/rss/client"
)

// startRSSWith is startRSS with extra flags: masterArgs for the master,
// workerArgs(i) for worker i (nil: none). Later flags win, so a worker's
// extra --dirs replaces the default one.
func startRSSWith(t testing.TB, n int, masterArgs []string, workerArgs func(i int) []string) *rssCluster {
	c := &rssCluster{t: t, dir: t.TempDir(), masterRPC: testnet.FreeAddr(t), gossip: testnet.FreeAddr(t)}
	t.Cleanup(c.shutdown) // also shows the logs of a cluster that failed to start
	httpAddr := testnet.FreeAddr(t)
	m := &proc{t: t, name: "basalt-rss-master", http: httpAddr, log: filepath.Join(c.dir, "master.log"), args: append([]string{
		"--listen", c.masterRPC, "--http", httpAddr, "--gossip-bind", c.gossip,
	}, masterArgs...)}
	c.masters = append(c.masters, m)
	m.start()
	for i := range n {
		w := c.newWorker(i)
		if workerArgs != nil {
			w.args = append(w.args, workerArgs(i)...)
		}
		c.workers = append(c.workers, w)
	}
	for _, w := range c.workers {
		w.start()
	}
	c.waitWorkers(n)
	return c
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends (after the processes using it, whose cleanups run
// first because they are registered later). It skips the test when not
// root.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mounting a %d-byte tmpfs on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting the tmpfs on %s: %v", dir, err)
		}
	})
	return dir
}

// metric returns the value of the sample of p's /metrics whose line
// starts with series (name and labels, exactly as exported).
func (p *proc) metric(series string) (float64, error) {
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("%s: metric %s not exported", p.name, series)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// mustMetric is metric failing the test on error.
func (p *proc) mustMetric(t *testing.T, series string) float64 {
	t.Helper()
	v, err := p.metric(series)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestShuffleDiskFullWorkerClientsMoveOn: one of three workers keeps its
// data (partition files and index) on a 4 MiB tmpfs; the job is several
// times larger. The other two have 32 MiB each, on tmpfs too so that
// placement ranks the three equal on free disk whatever the host's disk
// (a worker with 64 GiB less free than the best ranks below it), and
// every worker keeps 1 MiB free for its index (--disk-reserve). The
// master places on workers with at least 1.5 MiB free (--min-disk-free),
// so the small one takes partitions until it is nearly full and gossips
// so. Once full it refuses
// pushes with ResourceExhausted; the writers revive those partitions on
// other workers and push the unacknowledged batches again; every
// partition reads back exactly. The full worker survives the commit and
// serves fetches of its committed files, so they hold only whole batches:
// a torn one would fail its CRC or the batch count.
func TestShuffleDiskFullWorkerClientsMoveOn(t *testing.T) {
	dirs := []string{mountTmpfs(t, 4<<20), mountTmpfs(t, 32<<20), mountTmpfs(t, 32<<20)}
	c := startRSSWith(t, 3, []string{"--min-disk-free", strconv.Itoa(3 << 19)}, func(i int) []string {
		return []string{"--dirs", dirs[i], "--disk-reserve", strconv.Itoa(1 << 20)}
	})
	full := c.workers[0]
	// Uncompressed, so the bytes pushed are the bytes that fill the disk
	// (the job's records shrink several times under LZ4).
	a := c.appWith(t, "diskfull", rssclient.CodecNone)
	j := job{maps: 48, partitions: 30, recordsPerMap: 6000}
	j.register(t, a, 4)
	j.runMapsWithin(t, a, 4, 4, 45*time.Second)
	if n := full.mustMetric(t, `basalt_rss_worker_push_rejected_total{reason="disk_full"}`); n == 0 {
		t.Fatal("the worker on the 4 MiB tmpfs refused no batch for a full disk: make the job bigger")
	}
	if err := a.CommitShuffle(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	j.checkOutput(t, a, 4, 8)
	if err := full.healthy(); err != nil {
		t.Fatalf("the full worker after the commit: %v", err)
	}
	if n := full.mustMetric(t, "basalt_rss_worker_fetched_bytes_total"); n == 0 {
		t.Error("the full worker served no fetch: its committed files were not read")
	}
}

// runMapsWithin is runMaps failing the test when the maps have not all
// ended within d (writers that keep failing retry for long).
func (j job) runMapsWithin(t *testing.T, a *rssclient.App, shuffle, par int, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- j.runMapsCounting(t.Context(), a, shuffle, par, new(atomic.Int64)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatalf("the maps did not end within %v", d)
	}
}

// holdBuffers are worker flags that keep accepted batches in memory
// (so reserved in the budget) for 300ms before they are written, far
// longer than the writers take to push more than any budget in these
// tests. Without them a worker whose disk keeps up releases each batch
// as fast as it arrives and whether a budget is ever reached depends on
// the machine's scheduling.
var holdBuffers = []string{"--flush-interval", "300ms", "--flush-bytes", strconv.Itoa(1 << 20)}

// TestShuffleMemoryPressure: a single worker (so no replicas) with a
// 2 MiB admission budget takes pushes from 50 map writers at once, each
// allowed 256 KiB unacknowledged: far more than the budget. The worker
// refuses what does not fit with ResourceExhausted, the writers back off
// and push again, every record lands exactly once, and the worker stays
// up. Its memory in use, sampled throughout, never exceeds the limit.
func TestShuffleMemoryPressure(t *testing.T) {
	const limit = 2 << 20
	c := startRSSWith(t, 1, nil, func(int) []string {
		return append([]string{"--memory-limit", strconv.Itoa(limit)}, holdBuffers...)
	})
	w := c.workers[0]
	a, err := rssclient.Register(t.Context(), rssclient.Config{MasterAddr: c.masterRPC, AppID: "mempressure",
		BatchBytes: 16 << 10, MaxInFlightBytes: 256 << 10, RetryDeadline: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	j := job{maps: 50, partitions: 20, recordsPerMap: 4000}
	j.register(t, a, 6)
	if got := w.mustMetric(t, "basalt_rss_worker_memory_limit_bytes"); got != limit {
		t.Fatalf("worker memory limit %v, want %d", got, limit)
	}

	ctx, stopSampling := context.WithCancel(t.Context())
	peak := make(chan float64, 1)
	go func() { peak <- sampleMax(ctx, w, "basalt_rss_worker_memory_used_bytes") }()
	j.runMapsWithin(t, a, 6, j.maps, 45*time.Second)
	stopSampling()
	if p := <-peak; p > limit {
		t.Errorf("memory in use reached %v bytes, over the %d limit", p, limit)
	}

	if n := w.mustMetric(t, `basalt_rss_worker_push_rejected_total{reason="memory"}`); n == 0 {
		t.Fatal("no push was refused for memory: the budget was never reached; push more at once")
	}
	if err := a.CommitShuffle(t.Context(), 6); err != nil {
		t.Fatal(err)
	}
	j.checkOutput(t, a, 6, 8)
	if err := w.healthy(); err != nil {
		t.Fatalf("the worker after the job: %v", err)
	}
}

// TestShuffleAppMemoryQuota: one worker with a 4 MiB budget of which one
// application may hold 1 MiB (--app-memory-limit). A heavy application
// (40 writers, 256 KiB unacknowledged each) and a light one (4 writers)
// push at once. The heavy one is throttled by its quota (app_memory
// refusals), never by the whole budget (no memory refusals: the two
// shares together stay under it), and both jobs read back exactly.
func TestShuffleAppMemoryQuota(t *testing.T) {
	c := startRSSWith(t, 1, nil, func(int) []string {
		return append([]string{"--memory-limit", strconv.Itoa(4 << 20), "--app-memory-limit", strconv.Itoa(1 << 20)}, holdBuffers...)
	})
	w := c.workers[0]
	register := func(id string, shuffle int, j job) *rssclient.App {
		a, err := rssclient.Register(t.Context(), rssclient.Config{MasterAddr: c.masterRPC, AppID: id,
			BatchBytes: 16 << 10, MaxInFlightBytes: 256 << 10, RetryDeadline: 45 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close() })
		if err := a.RegisterShuffle(t.Context(), shuffle, j.maps, j.partitions); err != nil {
			t.Fatal(err)
		}
		return a
	}
	heavyJob, lightJob := job{maps: 40, partitions: 20, recordsPerMap: 4000}, job{maps: 4, partitions: 20, recordsPerMap: 4000}
	heavy, light := register("heavy", 1, heavyJob), register("light", 2, lightJob)
	heavyDone := make(chan error, 1)
	go func() { heavyDone <- heavyJob.runMapsCounting(t.Context(), heavy, 1, heavyJob.maps, new(atomic.Int64)) }()
	lightJob.runMapsWithin(t, light, 2, lightJob.maps, 45*time.Second)
	if err := <-heavyDone; err != nil {
		t.Fatal(err)
	}
	if n := w.mustMetric(t, `basalt_rss_worker_push_rejected_total{reason="app_memory"}`); n == 0 {
		t.Fatal("the heavy application was never held to its quota; push more at once")
	}
	if n := w.mustMetric(t, `basalt_rss_worker_push_rejected_total{reason="memory"}`); n != 0 {
		t.Fatalf("%v refusals for the whole budget: the per-application quota did not bound the heavy application", n)
	}
	for _, r := range []struct {
		a       *rssclient.App
		shuffle int
		j       job
	}{{heavy, 1, heavyJob}, {light, 2, lightJob}} {
		if err := r.a.CommitShuffle(t.Context(), r.shuffle); err != nil {
			t.Fatal(err)
		}
		r.j.checkOutput(t, r.a, r.shuffle, 8)
	}
}

// sampleMax scrapes series from p every 10 ms until ctx is done and
// returns the largest value seen (failed scrapes are skipped).
func sampleMax(ctx context.Context, p *proc, series string) float64 {
	most := 0.0
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if v, err := p.metric(series); err == nil {
			most = max(most, v)
		}
		select {
		case <-ctx.Done():
			return most
		case <-t.C:
		}
	}
}
