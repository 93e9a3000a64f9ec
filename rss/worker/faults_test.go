package worker_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"basalt/internal/testwait"
	"basalt/rss/rsspb"
	"basalt/rss/worker"
)

// enospc is the error a full disk gives a write.
func enospc(path string) error { return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC} }

// fileSize returns the size of the only partition file under dir.
func fileSize(t testing.TB, dir string) int64 {
	t.Helper()
	files := dataFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("want one partition file under %s, have %v", dir, files)
	}
	st, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestDiskFull: with Pebble's error-injecting FS failing partition file
// writes with ENOSPC, a push fails with ResourceExhausted saying the disk
// is full; once space is back the batch is pushed again, and the
// committed file holds exactly the whole batches that were acknowledged.
func TestDiskFull(t *testing.T) {
	full := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileWriteAt && strings.HasSuffix(op.Path, ".data") {
			return enospc(op.Path)
		}
		return nil
	})}
	cfg := dirsConfig(t, 1)
	cfg.FS, cfg.FlushInterval = errorfs.Wrap(vfs.Default, full), -1
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	bs := []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 1000), newBatch(1, 0, 0, 0, 0, 1, 2000), newBatch(1, 0, 0, 0, 0, 2, 3000)}
	mustPush(t, ctx, n.client, nil, bs[:2])
	full.On()
	res := push(ctx, n.client, nil, bs[2:])
	wantCode(t, "push to a full disk", res.err, codes.ResourceExhausted, "disk full", "no space left on device")
	if res.acked != 0 {
		t.Fatalf("acked %d batches on a full disk", res.acked)
	}
	full.Off()
	mustPush(t, ctx, n.client, nil, bs[2:])
	commit(t, ctx, n.client, 1)
	if got, want := fileSize(t, cfg.Dirs[0]), int64(3*32+6000); got != want {
		t.Fatalf("committed file has %d bytes, want %d (three whole batches)", got, want)
	}
	sameBatches(t, "after a full disk", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1}), bs)
	if got := metric(t, n.w, "basalt_rss_worker_push_rejected_total", "reason=disk_full"); got != 1 {
		t.Fatalf("disk_full rejections: %v, want 1", got)
	}
}

// shortWriteFS makes partition file writes stop half-way with ENOSPC
// while full is set, the way a filling disk does.
type shortWriteFS struct {
	vfs.FS
	full *atomic.Bool
}

func (fs shortWriteFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !strings.HasSuffix(name, ".data") {
		return f, err
	}
	return shortWriteFile{File: f, full: fs.full}, nil
}

type shortWriteFile struct {
	vfs.File
	full *atomic.Bool
}

func (f shortWriteFile) WriteAt(p []byte, off int64) (int, error) {
	if !f.full.Load() {
		return f.File.WriteAt(p, off)
	}
	n, _ := f.File.WriteAt(p[:len(p)/2], off)
	return n, enospc("partition file")
}

// TestDiskFullTornWrite: a write that stops half-way leaves no torn
// batch: the file is cut back to the last whole batch at once, the
// batches of the failed write are not acknowledged, and later batches
// follow the last whole one.
func TestDiskFullTornWrite(t *testing.T) {
	var full atomic.Bool
	cfg := dirsConfig(t, 1)
	cfg.FS, cfg.FlushInterval = shortWriteFS{FS: vfs.Default, full: &full}, -1
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	bs := []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 5000), newBatch(1, 0, 0, 0, 0, 1, 7000), newBatch(1, 0, 0, 0, 0, 2, 100)}
	mustPush(t, ctx, n.client, nil, bs[:1])
	full.Store(true)
	res := push(ctx, n.client, nil, bs[1:2])
	wantCode(t, "torn write", res.err, codes.ResourceExhausted, "disk full")
	if got, want := fileSize(t, cfg.Dirs[0]), int64(32+5000); got != want {
		t.Fatalf("after the torn write the file has %d bytes, want %d (one whole batch)", got, want)
	}
	full.Store(false)
	mustPush(t, ctx, n.client, nil, bs[2:])
	commit(t, ctx, n.client, 1)
	if got, want := fileSize(t, cfg.Dirs[0]), int64(2*32+5100); got != want {
		t.Fatalf("committed file has %d bytes, want %d", got, want)
	}
	sameBatches(t, "after a torn write", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1}), []*rsspb.Batch{bs[0], bs[2]})
}

// TestMemoryBudget: many concurrent pushers against a small memory limit
// (on the primary and on the replica) are refused with
// ResourceExhausted, back off and retry, and all their batches land;
// the memory in use never exceeds the limit.
func TestMemoryBudget(t *testing.T) {
	const limit = 64 << 10
	newCfg := func() worker.Config {
		cfg := dirsConfig(t, 1)
		cfg.MemoryLimitBytes, cfg.FlushInterval = limit, 5*time.Millisecond
		return cfg
	}
	primary, replica := startNode(t, newCfg()), startNode(t, newCfg())
	ctx := appCtx(t.Context(), testApp)
	const pushers, perPusher = 8, 30
	var all []*rsspb.Batch
	var wg sync.WaitGroup
	var refused atomic.Int64
	for m := range int32(pushers) {
		var bs []*rsspb.Batch
		for s := range int32(perPusher) {
			bs = append(bs, newBatch(1, m%4, 0, m, 0, s, 4000))
		}
		all = append(all, bs...)
		wg.Go(func() {
			if err := pushWithRetry(ctx, primary.client, replica.ref(), bs, &refused); err != nil {
				t.Errorf("pusher %d: %v", m, err)
			}
		})
	}
	wg.Wait()
	if refused.Load() == 0 {
		t.Fatal("no push was refused: the test did not exercise the limit")
	}
	for _, n := range []*node{primary, replica} {
		if peak := n.w.MemoryPeakBytes(); peak > limit {
			t.Fatalf("memory in use peaked at %d, over the %d limit", peak, limit)
		}
		testwait.Until(t, waitTimeout, "memory released", func() bool { return n.w.MemoryUsedBytes() == 0 })
		commit(t, ctx, n.client, 1)
		for p := range int32(4) {
			got := dedup(mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: p}))
			sameBatches(t, "after retries", sortedByID(got), sortedByID(partitionOf(all, p)))
		}
	}
	rejected := metric(t, primary.w, "basalt_rss_worker_push_rejected_total", "reason=memory") +
		metric(t, replica.w, "basalt_rss_worker_push_rejected_total", "reason=memory")
	if rejected == 0 {
		t.Fatal("no memory rejection counted")
	}
}

// pushWithRetry pushes bs until all are acknowledged, re-pushing the
// unacknowledged rest after a short jittered backoff whenever the worker
// says ResourceExhausted (what the client library does).
func pushWithRetry(ctx context.Context, c rsspb.WorkerClient, replica *rsspb.WorkerRef, bs []*rsspb.Batch, refused *atomic.Int64) error {
	for attempt := 0; len(bs) > 0; attempt++ {
		res := push(ctx, c, replica, bs)
		bs = bs[res.acked:]
		if res.err == nil {
			continue
		}
		if status.Code(res.err) != codes.ResourceExhausted || attempt > 10000 {
			return res.err
		}
		refused.Add(1)
		backoff := time.Duration(500+rand.IntN(1500)) * time.Microsecond
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// dedup drops repeated batches (same map, attempt and seq), as readers
// do: a batch stored but not acknowledged is pushed again.
func dedup(bs []*rsspb.Batch) []*rsspb.Batch {
	seen := map[bid]bool{}
	var out []*rsspb.Batch
	for _, b := range bs {
		if !seen[idOf(b)] {
			seen[idOf(b)] = true
			out = append(out, b)
		}
	}
	return out
}

// TestReplicaDown: a push naming a replica that cannot be reached fails
// with Unavailable and acknowledges nothing.
func TestReplicaDown(t *testing.T) {
	primary, replica := startNode(t, dirsConfig(t, 1)), startNode(t, dirsConfig(t, 1))
	replica.stop()
	ctx := appCtx(t.Context(), testApp)
	res := push(ctx, primary.client, replica.ref(), []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 100)})
	wantCode(t, "push with the replica down", res.err, codes.Unavailable, "replica "+replica.addr)
	if res.acked != 0 {
		t.Fatalf("acked %d batches that have one copy", res.acked)
	}
	testwait.Until(t, waitTimeout, "memory released", func() bool { return primary.w.MemoryUsedBytes() == 0 })
}

// TestReplicaDiesMidStream: when the replica goes away in the middle of
// a stream, the batches it acknowledged stay acknowledged and the next
// ones fail with Unavailable instead of being acknowledged with one copy.
func TestReplicaDiesMidStream(t *testing.T) {
	primary, replica := startNode(t, dirsConfig(t, 1)), startNode(t, dirsConfig(t, 1))
	ctx, cancel := context.WithCancel(appCtx(t.Context(), testApp))
	defer cancel()
	st, err := primary.client.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send := func(seq int32) {
		if err := st.Send(&rsspb.PushRequest{Replica: replica.ref(), Batches: []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, seq, 100)}}); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
	}
	for s := range int32(5) {
		send(s)
	}
	acked := int64(0)
	for acked < 5 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d acks: %v", acked, err)
		}
		acked = resp.GetAcked()
	}
	replica.stop()
	for s := int32(5); s < 10; s++ {
		send(s)
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			wantCode(t, "push after the replica died", err, codes.Unavailable, "replica")
			break
		}
		acked = resp.GetAcked()
	}
	if acked != 5 {
		t.Fatalf("acked %d batches, want the 5 the replica acknowledged", acked)
	}
}

// dropAcks is a WorkerClient whose Replicate streams never deliver the
// replica's acknowledgements.
type dropAcks struct{ rsspb.WorkerClient }

func (c dropAcks) Replicate(ctx context.Context, opts ...grpc.CallOption) (rsspb.Worker_ReplicateClient, error) {
	st, err := c.WorkerClient.Replicate(ctx, opts...)
	return dropAckStream{st}, err
}

type dropAckStream struct{ rsspb.Worker_ReplicateClient }

func (s dropAckStream) Recv() (*rsspb.PushResponse, error) {
	for {
		if _, err := s.Worker_ReplicateClient.Recv(); err != nil {
			return nil, err
		}
	}
}

// TestNoAckWithoutReplicaAck: a batch written on the primary and on the
// replica is not acknowledged while the replica's acknowledgement does
// not reach the primary.
func TestNoAckWithoutReplicaAck(t *testing.T) {
	replica := startNode(t, dirsConfig(t, 1))
	cfg := dirsConfig(t, 1)
	cfg.Dialer = func(addr string) (rsspb.WorkerClient, error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = conn.Close() })
		return dropAcks{rsspb.NewWorkerClient(conn)}, nil
	}
	primary := startNode(t, cfg)
	ctx, cancel := context.WithCancel(appCtx(t.Context(), testApp))
	defer cancel()
	st, err := primary.client.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for s := range int32(2) {
		if err := st.Send(&rsspb.PushRequest{Replica: replica.ref(), Batches: []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, s, 100)}}); err != nil {
			t.Fatal(err)
		}
	}
	var acks atomic.Int64
	ended := make(chan error, 1)
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				ended <- err
				return
			}
			acks.Store(resp.GetAcked())
		}
	}()
	testwait.Until(t, waitTimeout, "the replica stores both batches", func() bool {
		return metric(t, replica.w, "basalt_rss_worker_pushed_batches_total", "stream=replicate") == 2
	})
	testwait.Stays(t, 200*time.Millisecond, "no acknowledgement", func() bool {
		return acks.Load() == 0 && primary.w.MemoryUsedBytes() == 2*(32+100)
	})
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	// The replica ends its stream having acknowledged both batches, but
	// the primary never saw those acknowledgements: it must fail the push.
	wantCode(t, "push end", <-ended, codes.Unavailable, "replica")
	if acks.Load() != 0 {
		t.Fatalf("acked %d batches without the replica's acknowledgement", acks.Load())
	}
}

// TestDrain: Drain lets the batches a stream already sent be written and
// acknowledged, then ends the stream with Unavailable and refuses new
// streams; Health reports it.
func TestDrain(t *testing.T) {
	cfg := dirsConfig(t, 1)
	cfg.FlushInterval = time.Second // the batches are in flight when Drain starts
	n := startNode(t, cfg)
	ctx, cancel := context.WithCancel(appCtx(t.Context(), testApp))
	defer cancel()
	st, err := n.client.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for s := range int32(3) {
		if err := st.Send(&rsspb.PushRequest{Batches: []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, s, 1000)}}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, waitTimeout, "three batches received", func() bool { return n.w.MemoryUsedBytes() == 3*(32+1000) })
	drained := make(chan error, 1)
	go func() { drained <- n.w.Drain(t.Context()) }()
	acked := int64(0)
	for {
		resp, err := st.Recv()
		if err != nil {
			wantCode(t, "stream after drain", err, codes.Unavailable, "shutting down")
			break
		}
		acked = resp.GetAcked()
	}
	if acked != 3 {
		t.Fatalf("acked %d of the 3 batches in flight", acked)
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	res := push(appCtx(t.Context(), testApp), n.client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 3, 10)})
	wantCode(t, "push after drain", res.err, codes.Unavailable)
	if err := n.w.Health(); !errors.Is(err, worker.ErrDraining) {
		t.Fatalf("health while draining: %v", err)
	}
	commit(t, appCtx(t.Context(), testApp), n.client, 1)
	if got := mustFetch(t, appCtx(t.Context(), testApp), n.client, &rsspb.FetchRequest{ShuffleId: 1}); len(got) != 3 {
		t.Fatalf("fetched %d batches after drain, want 3", len(got))
	}
}

// TestCloseWithOpenStream: Close ends open streams with Unavailable and
// returns even though the gRPC server still runs.
func TestCloseWithOpenStream(t *testing.T) {
	cfg := dirsConfig(t, 1)
	n := startNode(t, cfg)
	ctx, cancel := context.WithCancel(appCtx(t.Context(), testApp))
	defer cancel()
	st, err := n.client.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&rsspb.PushRequest{Batches: []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 10)}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || resp.GetAcked() != 1 {
		t.Fatalf("first ack: %v %v", resp, err)
	}
	if err := n.w.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, "stream after Close", err, codes.Unavailable, "closed")
	if files := dataFiles(t, filepath.Clean(cfg.Dirs[0])); len(files) != 1 {
		t.Fatalf("partition files after Close: %v", files)
	}
}

// TestSyncFailureLosesOnlyThatPartition: a partition file whose fsync
// fails at Commit is not committed (its acknowledged batches may be
// lost): Fetch reports DataLoss naming it, so readers use the replica,
// while the shuffle's other partitions commit and read normally.
func TestSyncFailureLosesOnlyThatPartition(t *testing.T) {
	failSync := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && strings.HasSuffix(op.Path, "/1-0.data") {
			return &os.PathError{Op: "fsync", Path: op.Path, Err: syscall.EIO}
		}
		return nil
	})
	cfg := dirsConfig(t, 1)
	cfg.FS = errorfs.Wrap(vfs.Default, failSync)
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	good, lost := newBatch(1, 0, 0, 0, 0, 0, 100), newBatch(1, 1, 0, 0, 0, 0, 100)
	mustPush(t, ctx, n.client, nil, []*rsspb.Batch{good, lost})
	if got := commit(t, ctx, n.client, 1); got != 1 {
		t.Fatalf("commit: %d partitions, want 1 (the other one failed)", got)
	}
	sameBatches(t, "healthy partition", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1}), []*rsspb.Batch{good})
	_, err := fetch(ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: 1})
	wantCode(t, "fetch of the failed partition", err, codes.DataLoss, "lost", "partition 1", "input/output error")
	if got := commit(t, ctx, n.client, 1); got != 1 {
		t.Fatalf("second commit: %d partitions, want 1", got)
	}
}

// TestAppMemoryLimit: with a per-application quota, an application whose
// unacknowledged batches fill its share has its next batch refused with
// ResourceExhausted (counted as app_memory) while the whole budget still
// has room, and another application is admitted meanwhile; once the
// first one's batches are acknowledged its share is free again.
func TestAppMemoryLimit(t *testing.T) {
	const batch, held = 4000, 4 * (4000 + 32) // 4 batches with their headers
	cfg := dirsConfig(t, 1)
	cfg.MemoryLimitBytes, cfg.AppMemoryLimitBytes = 64<<10, held+1000
	cfg.FlushInterval = time.Second // the heavy application's batches stay unacknowledged a while
	n := startNode(t, cfg)
	heavy, light := appCtx(t.Context(), "heavy"), appCtx(t.Context(), "light")

	st, err := n.client.Push(heavy)
	if err != nil {
		t.Fatal(err)
	}
	var inFlight []*rsspb.Batch
	for s := range int32(4) {
		b := newBatch(1, 0, 0, 0, 0, s, batch)
		inFlight = append(inFlight, b)
		if err := st.Send(&rsspb.PushRequest{Batches: []*rsspb.Batch{b}}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, waitTimeout, "the heavy application's batches held", func() bool { return n.w.MemoryUsedBytes() == held })

	res := push(heavy, n.client, nil, []*rsspb.Batch{newBatch(1, 1, 0, 1, 0, 0, batch)})
	wantCode(t, "a batch over the application's share", res.err, codes.ResourceExhausted, "per-application memory limit", "heavy")
	if v := metric(t, n.w, "basalt_rss_worker_push_rejected_total", "reason=app_memory"); v != 1 {
		t.Fatalf("app_memory rejections %v, want 1", v)
	}
	if v := metric(t, n.w, "basalt_rss_worker_push_rejected_total", "reason=memory"); v != 0 {
		t.Fatalf("memory rejections %v, want 0: the whole budget had room", v)
	}
	lightBatch := newBatch(1, 0, 0, 0, 0, 0, batch)
	mustPush(t, light, n.client, nil, []*rsspb.Batch{lightBatch}) // admitted while heavy is at its limit

	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := st.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("the heavy application's stream in flight: %v", err)
		}
	}
	testwait.Until(t, waitTimeout, "memory released", func() bool { return n.w.MemoryUsedBytes() == 0 })
	again := newBatch(1, 1, 0, 1, 0, 0, batch)
	mustPush(t, heavy, n.client, nil, []*rsspb.Batch{again})
	commit(t, heavy, n.client, 1)
	sameBatches(t, "heavy partition 0", mustFetch(t, heavy, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: 0}), inFlight)
	sameBatches(t, "heavy partition 1", mustFetch(t, heavy, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: 1}), []*rsspb.Batch{again})
	commit(t, light, n.client, 1)
	sameBatches(t, "light", mustFetch(t, light, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: 0}), []*rsspb.Batch{lightBatch})
}
