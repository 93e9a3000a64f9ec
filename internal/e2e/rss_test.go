package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"basalt/internal/testnet"
	"basalt/internal/testwait"
	rssclient "basalt/rss/client"
	"basalt/rss/masterconn"
	"basalt/rss/rsspb"
)

// rssCluster is RSS masters (one, or three replicating their state) and
// workers running as processes.
type rssCluster struct {
	t   testing.TB
	dir string
	// masterRPC and gossip are comma-separated lists, one address per
	// master.
	masterRPC string
	gossip    string
	masters   []*proc
	workers   []*proc
}

// startRSS starts a master and n workers and waits until the master sees
// every worker.
func startRSS(t testing.TB, n int) *rssCluster { return startRSSWith(t, n, nil, nil) }

func (c *rssCluster) newWorker(i int) *proc {
	httpAddr, rpc := testnet.FreeAddr(c.t), testnet.FreeAddr(c.t)
	return &proc{t: c.t, name: "basalt-rss-worker", http: httpAddr, log: filepath.Join(c.dir, fmt.Sprintf("worker%d.log", i)), args: []string{
		"--listen", rpc, "--http", httpAddr, "--dirs", filepath.Join(c.dir, fmt.Sprintf("worker%d", i)),
		"--id", fmt.Sprintf("worker%d", i), "--gossip-bind", testnet.FreeAddr(c.t), "--gossip-join", c.gossip,
		// The cluster stops as a whole: waiting on SIGTERM for the
		// applications' data to be deleted would only delay it.
		"--shutdown-deadline", "0",
	}}
}

func (c *rssCluster) shutdown() {
	if c.t.Failed() {
		for _, p := range append(slices.Clone(c.masters), c.workers...) {
			p.dumpLog()
		}
	}
	for _, w := range c.workers {
		w.stop()
	}
	for _, m := range c.masters {
		m.stop()
	}
}

// waitWorkers waits until the master lists n live workers.
func (c *rssCluster) waitWorkers(n int) {
	waitFor(c.t, 30*time.Second, fmt.Sprintf("master sees %d workers", n), func() error {
		conn, err := masterconn.Dial(masterconn.Split(c.masterRPC), 5*time.Second, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := rsspb.NewMasterClient(conn).Status(ctx, &rsspb.StatusRequest{})
		if err != nil {
			return err
		}
		live := 0
		for _, w := range st.GetWorkers() {
			if !w.GetDecommissioning() {
				live++
			}
		}
		if live != n {
			return fmt.Errorf("%d workers", live)
		}
		return nil
	})
}

// app registers an application whose batches are LZ4-compressed.
func (c *rssCluster) app(t *testing.T, id string) *rssclient.App {
	t.Helper()
	return c.appWith(t, id, rssclient.CodecLZ4)
}

// appWith registers an application whose batches use codec.
func (c *rssCluster) appWith(t *testing.T, id string, codec rssclient.Codec) *rssclient.App {
	t.Helper()
	a, err := rssclient.Register(t.Context(), rssclient.Config{MasterAddr: c.masterRPC, AppID: id, BatchBytes: 4 << 10, RetryDeadline: 45 * time.Second, Codec: codec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// job is a synthetic shuffle: maps mappers each writing records to
// partitions; record r of map m goes to partition hash(record) % partitions.
type job struct {
	maps, partitions, recordsPerMap int
}

func (j job) record(m, r int) []byte { return fmt.Appendf(nil, "map%04d-rec%06d-payload", m, r) }

func (j job) partitionOf(rec []byte) int {
	h := fnv.New32a()
	_, _ = h.Write(rec)
	return int(h.Sum32() % uint32(j.partitions))
}

// expected returns every partition's records, sorted.
func (j job) expected() [][]string {
	out := make([][]string, j.partitions)
	for m := range j.maps {
		for r := range j.recordsPerMap {
			rec := j.record(m, r)
			p := j.partitionOf(rec)
			out[p] = append(out[p], string(rec))
		}
	}
	for _, l := range out {
		slices.Sort(l)
	}
	return out
}

// runMap writes map m's records as attempt; stopAfter >= 0 aborts the
// attempt after that many records (a task that dies half-way).
func (j job) runMap(ctx context.Context, a *rssclient.App, shuffle, m, attempt, stopAfter int) (rssclient.MapEnd, error) {
	w, err := a.NewWriter(ctx, shuffle, m, attempt)
	if err != nil {
		return rssclient.MapEnd{}, err
	}
	for r := range j.recordsPerMap {
		if r == stopAfter {
			w.Abort()
			return rssclient.MapEnd{}, nil
		}
		rec := j.record(m, r)
		if err := w.Write(j.partitionOf(rec), rec); err != nil {
			w.Abort()
			return rssclient.MapEnd{}, err
		}
	}
	return w.Close(ctx)
}

// run is a whole shuffle: register it, run every map (par at once),
// commit, and check every partition (par at once).
func (j job) run(t *testing.T, a *rssclient.App, shuffle, par int) {
	t.Helper()
	j.register(t, a, shuffle)
	j.runMaps(t, a, shuffle, par)
	if err := a.CommitShuffle(t.Context(), shuffle); err != nil {
		t.Fatalf("commit shuffle %d: %v", shuffle, err)
	}
	j.checkOutput(t, a, shuffle, par)
}

// register registers shuffle with j's shape.
func (j job) register(t *testing.T, a *rssclient.App, shuffle int) {
	t.Helper()
	if err := a.RegisterShuffle(t.Context(), shuffle, j.maps, j.partitions); err != nil {
		t.Fatalf("register shuffle %d: %v", shuffle, err)
	}
}

// waitMetric waits until p's metric name equals want.
func waitMetric(t testing.TB, p *proc, name string, want float64) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%s = %v", name, want), func() error {
		v, err := p.metric(name)
		if err == nil && v != want {
			err = fmt.Errorf("%s is %v", name, v)
		}
		return err
	})
}

// runMaps runs every map (attempt 0) with par at once.
func (j job) runMaps(t *testing.T, a *rssclient.App, shuffle, par int) {
	t.Helper()
	if err := j.runMapsCounting(t.Context(), a, shuffle, par, new(atomic.Int64)); err != nil {
		t.Fatal(err)
	}
}

// runMapsCounting runs every map, counting those that ended in finished.
func (j job) runMapsCounting(ctx context.Context, a *rssclient.App, shuffle, par int, finished *atomic.Int64) error {
	sem := make(chan struct{}, par)
	errs := make(chan error, j.maps)
	var wg sync.WaitGroup
	for m := range j.maps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := j.runMap(ctx, a, shuffle, m, 0, -1); err != nil {
				errs <- fmt.Errorf("map %d: %w", m, err)
			}
			finished.Add(1)
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(slices.Collect(chanSeq(errs))...)
}

func chanSeq[T any](c <-chan T) func(func(T) bool) {
	return func(yield func(T) bool) {
		for v := range c {
			if !yield(v) {
				return
			}
		}
	}
}

// readPartition reads a whole partition, sorted.
func readPartition(ctx context.Context, a *rssclient.App, shuffle, p int) ([]string, error) {
	r, err := a.NewReader(ctx, shuffle, p, 0, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []string
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			slices.Sort(out)
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, string(rec))
	}
}

// checkOutput reads every partition with par readers at once and compares
// it with the expected multiset.
func (j job) checkOutput(t *testing.T, a *rssclient.App, shuffle, par int) {
	t.Helper()
	want := j.expected()
	sem := make(chan struct{}, par)
	errs := make(chan error, j.partitions)
	var wg sync.WaitGroup
	for p := range j.partitions {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			got, err := readPartition(t.Context(), a, shuffle, p)
			switch {
			case err != nil:
				errs <- err
			case !slices.Equal(got, want[p]):
				errs <- fmt.Errorf("partition %d: %d records, want %d (or different contents)", p, len(got), len(want[p]))
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(slices.Collect(chanSeq(errs))...); err != nil {
		t.Fatal(err)
	}
}

// TestShuffleExactOutput: a master and three workers as processes; 200
// mappers push random-order records to 500 partitions; every reducer's
// output equals the expected multiset exactly.
func TestShuffleExactOutput(t *testing.T) {
	c := startRSS(t, 3)
	a := c.app(t, "exact")
	j := job{maps: 200, partitions: 500, recordsPerMap: 2000}
	j.run(t, a, 1, 8)
}

// TestShuffleSpeculativeAndWorkerLoss: map 0 has three attempts (one dies
// half-way, one completes and wins, a late duplicate completes and is
// ignored): its records are read exactly once. Then a worker is killed
// with SIGKILL after the commit: the reducers read the replicas; nothing
// is lost.
func TestShuffleSpeculativeAndWorkerLoss(t *testing.T) {
	c := startRSS(t, 3)
	a := c.app(t, "spec")
	j := job{maps: 20, partitions: 40, recordsPerMap: 1000}
	j.register(t, a, 7)
	ctx := t.Context()
	if _, err := j.runMap(ctx, a, 7, 0, 0, j.recordsPerMap/2); err != nil {
		t.Fatal(err)
	}
	if end, err := j.runMap(ctx, a, 7, 0, 1, -1); err != nil || !end.Won {
		t.Fatalf("attempt 1 of map 0: %+v, %v; want it to win", end, err)
	}
	if end, err := j.runMap(ctx, a, 7, 0, 2, -1); err != nil || end.Won || end.WinningAttempt != 1 {
		t.Fatalf("late attempt 2 of map 0: %+v, %v; want it ignored in favour of attempt 1", end, err)
	}
	for m := 1; m < j.maps; m++ {
		if _, err := j.runMap(ctx, a, 7, m, 0, -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CommitShuffle(ctx, 7); err != nil {
		t.Fatal(err)
	}
	j.checkOutput(t, a, 7, 8)
	c.workers[1].kill9()
	j.checkOutput(t, a, 7, 8)
}

// TestShuffleWorkerKilledDuringPush: a worker is killed with SIGKILL while
// mappers push; writers move the failed partitions to new locations and
// push again, and the output is still exact.
func TestShuffleWorkerKilledDuringPush(t *testing.T) {
	c := startRSS(t, 3)
	a := c.app(t, "killpush")
	j := job{maps: 40, partitions: 60, recordsPerMap: 3000}
	j.register(t, a, 3)
	var finished atomic.Int64
	done := make(chan error, 1)
	go func() { done <- j.runMapsCounting(t.Context(), a, 3, 4, &finished) }()
	testwait.Until(t, 60*time.Second, "a few maps finished", func() bool { return finished.Load() >= 4 })
	if finished.Load() >= int64(j.maps) {
		t.Fatal("every map finished before the kill: make the job bigger")
	}
	c.workers[0].kill9()
	if err := <-done; err != nil {
		t.Fatalf("maps with a worker killed during push: %v", err)
	}
	if err := a.CommitShuffle(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	j.checkOutput(t, a, 3, 8)
}

// TestShuffleWorkerRestartServesCommitted: with two workers every
// partition has a copy on each; worker 0 is restarted on the same data
// directory after the commit and worker 1 is killed: every partition is
// read from the restarted worker alone.
func TestShuffleWorkerRestartServesCommitted(t *testing.T) {
	c := startRSS(t, 2)
	a := c.app(t, "restart")
	j := job{maps: 10, partitions: 20, recordsPerMap: 1000}
	j.register(t, a, 2)
	j.runMaps(t, a, 2, 4)
	if err := a.CommitShuffle(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	c.workers[0].stop()
	c.workers[0].start()
	c.workers[1].kill9()
	j.checkOutput(t, a, 2, 4)
}

// TestShuffleMissingBatchOrCorruptionIsAnError: a reader never returns a
// short partition. The winning attempt of map 0 is reported to the master
// with one more batch for partition 1 than it pushed (as if a batch had
// vanished), and partition 2's files are corrupted on both copies: both
// partitions fail with errors naming them, every other partition reads
// exactly.
func TestShuffleMissingBatchOrCorruptionIsAnError(t *testing.T) {
	c := startRSS(t, 2)
	a := c.app(t, "missing")
	j := job{maps: 4, partitions: 6, recordsPerMap: 500}
	ctx := t.Context()
	if err := a.RegisterShuffle(ctx, 5, j.maps, j.partitions); err != nil {
		t.Fatal(err)
	}
	w, err := a.NewWriter(ctx, 5, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for r := range j.recordsPerMap {
		rec := j.record(0, r)
		if err := w.Write(j.partitionOf(rec), rec); err != nil {
			t.Fatal(err)
		}
	}
	// Report map 0's end first, by hand, claiming one batch too many for
	// partition 1; the writer's own report then loses to it.
	claimed := make([]int32, j.partitions)
	claimed[1] = 1 << 20
	if _, err := c.masterClient(t, a).MapEnd(ctx, &rsspb.MapEndRequest{ShuffleId: 5, MapIndex: 0, Attempt: 7, Batches: claimed}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for m := 1; m < j.maps; m++ {
		if _, err := j.runMap(ctx, a, 5, m, 0, -1); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.CommitShuffle(ctx, 5); err != nil {
		t.Fatal(err)
	}
	corrupted := 0
	for i := range c.workers {
		files, _ := filepath.Glob(filepath.Join(c.dir, fmt.Sprintf("worker%d", i), "apps", "missing", "5", "2-*.data"))
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			flipByte(t, f, fi.Size()-5) // inside the last batch's data: a map that won
			corrupted++
		}
	}
	if corrupted < 2 {
		t.Fatalf("found %d files of partition 2 to corrupt, want one per copy", corrupted)
	}
	for p := range j.partitions {
		_, err := readPartition(ctx, a, 5, p)
		switch {
		case p == 1 || p == 2:
			var pe *rssclient.PartitionError
			if !errors.Is(err, rssclient.ErrDataLost) || !errors.As(err, &pe) || pe.Partition != p || pe.Shuffle != 5 {
				t.Errorf("partition %d: %v, want ErrDataLost naming the partition", p, err)
			}
		case err != nil:
			t.Errorf("partition %d: %v", p, err)
		}
	}
}

// masterClient returns a master client that authenticates as a.
func (c *rssCluster) masterClient(t *testing.T, a *rssclient.App) rsspb.MasterClient {
	t.Helper()
	conn, err := grpc.NewClient(c.masterRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "basalt-rss-app", "missing", "basalt-rss-token", a.Token())
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return rsspb.NewMasterClient(conn)
}

// flipByte inverts the byte at off of a file.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
