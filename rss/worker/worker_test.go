package worker_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc/codes"

	"basalt/rss/rsspb"
	"basalt/rss/worker"
)

// job is the batches of several map attempts to several partitions of
// shuffle 1: maps 0..maps-1 with attempt 0, maps 0 and 1 also with
// attempt 1 (a speculative copy), seqs 0..seqs-1 per partition, sizes
// varying from tiny to 70 KB.
func job(maps, partitions, seqs int32) []*rsspb.Batch {
	var bs []*rsspb.Batch
	for m := range maps {
		attempts := int32(1)
		if m < 2 {
			attempts = 2
		}
		for a := range attempts {
			for s := range seqs {
				for p := range partitions {
					size := int(1 + (m*7919+a*104729+s*31+p*17)%70000)
					bs = append(bs, newBatch(1, p, 0, m, a, s, size))
				}
			}
		}
	}
	return bs
}

// byMap splits batches into one list per map index.
func byMap(bs []*rsspb.Batch) [][]*rsspb.Batch {
	var out [][]*rsspb.Batch
	for _, b := range bs {
		for int(b.GetMapIndex()) >= len(out) {
			out = append(out, nil)
		}
		out[b.GetMapIndex()] = append(out[b.GetMapIndex()], b)
	}
	return out
}

// TestPushCommitFetchPrimaryAndReplica: batches of several map attempts
// to several partitions, pushed over concurrent streams to a primary
// with a replica, are all acknowledged; after Commit on both, each
// partition fetched from the primary and from the replica holds exactly
// the pushed batches, each stream's batches in push order.
func TestPushCommitFetchPrimaryAndReplica(t *testing.T) {
	primary, replica := startNode(t, dirsConfig(t, 2)), startNode(t, dirsConfig(t, 1))
	ctx := appCtx(t.Context(), testApp)
	all := job(5, 4, 3)
	var wg sync.WaitGroup
	for _, bs := range byMap(all) { // one stream per map, concurrently
		wg.Go(func() { mustPush(t, ctx, primary.client, replica.ref(), bs) })
	}
	wg.Wait()
	if got := primary.w.ActivePartitions(); got != 4 {
		t.Fatalf("primary has %d active partitions, want 4", got)
	}
	for _, n := range []*node{primary, replica} {
		if got := commit(t, ctx, n.client, 1); got != 4 {
			t.Fatalf("commit on %s: %d partitions, want 4", n.addr, got)
		}
		if got := n.w.ActivePartitions(); got != 0 {
			t.Fatalf("%d active partitions after commit, want 0", got)
		}
	}
	for p := range int32(4) {
		want := partitionOf(all, p)
		req := &rsspb.FetchRequest{ShuffleId: 1, Partition: p}
		fromPrimary := mustFetch(t, ctx, primary.client, req)
		fromReplica := mustFetch(t, ctx, replica.client, req)
		sameBatches(t, "primary", sortedByID(fromPrimary), sortedByID(want))
		sameBatches(t, "replica", sortedByID(fromReplica), sortedByID(want))
		for _, got := range [][]*rsspb.Batch{fromPrimary, fromReplica} {
			checkStreamOrder(t, got)
		}
	}
	if got := metric(t, primary.w, "basalt_rss_worker_pushed_batches_total", "stream=push"); got != float64(len(all)) {
		t.Fatalf("primary counted %v pushed batches, want %d", got, len(all))
	}
	if got := metric(t, replica.w, "basalt_rss_worker_pushed_batches_total", "stream=replicate"); got != float64(len(all)) {
		t.Fatalf("replica counted %v replicated batches, want %d", got, len(all))
	}
	for i, dir := range primary.cfg.Dirs {
		if files := dataFiles(t, dir); len(files) != 2 {
			t.Errorf("primary data directory %d holds %d partition files, want 2 (spread evenly): %v", i, len(files), files)
		}
	}
}

// checkStreamOrder fails unless the batches of each map attempt come in
// seq order (they were pushed in order on one stream).
func checkStreamOrder(t *testing.T, bs []*rsspb.Batch) {
	t.Helper()
	last := map[[2]int32]int32{}
	for _, b := range bs {
		k := [2]int32{b.GetMapIndex(), b.GetAttempt()}
		if s, ok := last[k]; ok && b.GetSeq() != s+1 {
			t.Fatalf("map %d attempt %d: seq %d follows %d", k[0], k[1], b.GetSeq(), s)
		}
		last[k] = b.GetSeq()
	}
}

// dataFiles lists the partition files under a data directory.
func dataFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "apps", "*", "*", "*.data"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestFetchFilters: Fetch keeps only the winners' attempts (maps without
// a winner are skipped) and the map range, in file order.
func TestFetchFilters(t *testing.T) {
	n := startNode(t, dirsConfig(t, 1))
	ctx := appCtx(t.Context(), testApp)
	all := partitionOf(job(5, 1, 3), 0)
	mustPush(t, ctx, n.client, nil, all)
	commit(t, ctx, n.client, 1)
	winners := []*rsspb.MapWinner{{MapIndex: 0, Attempt: 1}, {MapIndex: 1, Attempt: 0}, {MapIndex: 2}, {MapIndex: 4}}
	keep := func(f func(*rsspb.Batch) bool) []*rsspb.Batch {
		var out []*rsspb.Batch
		for _, b := range all {
			if f(b) {
				out = append(out, b)
			}
		}
		return out
	}
	isWinner := func(b *rsspb.Batch) bool {
		for _, w := range winners {
			if w.GetMapIndex() == b.GetMapIndex() {
				return w.GetAttempt() == b.GetAttempt()
			}
		}
		return false
	}
	for _, tc := range []struct {
		name       string
		winners    []*rsspb.MapWinner
		start, end int32
		want       []*rsspb.Batch
	}{
		{"all", nil, 0, 0, all},
		{"winners", winners, 0, 0, keep(isWinner)},
		{"range", nil, 1, 3, keep(func(b *rsspb.Batch) bool { return b.GetMapIndex() >= 1 && b.GetMapIndex() < 3 })},
		{"open range", nil, 3, 0, keep(func(b *rsspb.Batch) bool { return b.GetMapIndex() >= 3 })},
		{"winners and range", winners, 1, 4, keep(func(b *rsspb.Batch) bool {
			return isWinner(b) && b.GetMapIndex() >= 1 && b.GetMapIndex() < 4
		})},
		{"empty range", nil, 4, 4, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Winners: tc.winners, StartMap: tc.start, EndMap: tc.end})
			sameBatches(t, tc.name, got, tc.want)
		})
	}
}

// TestFetchChunks: responses carry at most FetchChunkBytes of batch data
// unless a single batch is larger.
func TestFetchChunks(t *testing.T) {
	cfg := dirsConfig(t, 1)
	cfg.FetchChunkBytes = 100 << 10
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	var bs []*rsspb.Batch
	for s := range int32(40) {
		size := 30 << 10
		if s == 17 {
			size = 300 << 10
		}
		bs = append(bs, newBatch(1, 0, 0, 0, 0, s, size))
	}
	mustPush(t, ctx, n.client, nil, bs)
	commit(t, ctx, n.client, 1)
	got, sizes, err := fetchResponses(ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1})
	if err != nil {
		t.Fatal(err)
	}
	sameBatches(t, "chunked fetch", got, bs)
	for i, s := range sizes {
		if s > cfg.FetchChunkBytes && s != 300<<10 {
			t.Fatalf("response %d carries %d bytes, over the %d chunk", i, s, cfg.FetchChunkBytes)
		}
	}
	if len(sizes) < 12 {
		t.Fatalf("%d responses for 1.4 MB in 100 KB chunks", len(sizes))
	}
}

// TestCorruptionOnDisk: a byte flipped in a committed file makes Fetch
// fail with DataLoss naming the application, shuffle, partition, epoch
// and the batch's offset; other partitions still read.
func TestCorruptionOnDisk(t *testing.T) {
	n := startNode(t, dirsConfig(t, 1))
	ctx := appCtx(t.Context(), testApp)
	var bs []*rsspb.Batch
	for s := range int32(3) {
		bs = append(bs, newBatch(1, 2, 5, 0, 0, s, 1000), newBatch(1, 3, 5, 0, 0, s, 1000))
	}
	mustPush(t, ctx, n.client, nil, bs)
	commit(t, ctx, n.client, 1)
	path := filepath.Join(n.cfg.Dirs[0], "apps", testApp, "1", "2-5.data")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 3*(32+1000) {
		t.Fatalf("file has %d bytes, want 3 batches of 32+1000", len(data))
	}
	data[1032+32+500] ^= 0x40 // in the second batch's data
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = fetch(ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: 2, Epoch: 5})
	wantCode(t, "fetch of the corrupt partition", err, codes.DataLoss, "app "+testApp, "shuffle 1", "partition 2", "epoch 5", "offset 1032")
	mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: 3, Epoch: 5})
	// A fetch that skips the corrupt batch does not read it.
	got := mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: 2, Epoch: 5, StartMap: 1})
	if len(got) != 0 {
		t.Fatalf("map range [1,) returned %d batches", len(got))
	}
}

// TestBadCRCOnPush: a batch whose data does not match its CRC is refused
// with DataLoss after the batches before it are acknowledged; neither it
// nor anything after it on the stream is stored.
func TestBadCRCOnPush(t *testing.T) {
	n := startNode(t, dirsConfig(t, 1))
	ctx := appCtx(t.Context(), testApp)
	good := newBatch(1, 0, 0, 0, 0, 0, 500)
	bad := newBatch(1, 0, 0, 0, 0, 1, 500)
	bad.Crc32C ^= 1
	after := newBatch(1, 0, 0, 0, 0, 2, 500)
	res := push(ctx, n.client, nil, []*rsspb.Batch{good, bad, after})
	wantCode(t, "push with a bad crc", res.err, codes.DataLoss, "partition 0", "seq 1")
	if res.acked != 1 {
		t.Fatalf("acked %d, want 1 (the batch before the bad one)", res.acked)
	}
	commit(t, ctx, n.client, 1)
	sameBatches(t, "after a bad crc", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1}), []*rsspb.Batch{good})
	if got := metric(t, n.w, "basalt_rss_worker_push_rejected_total", "reason=crc"); got != 1 {
		t.Fatalf("crc rejections: %v, want 1", got)
	}
}

// TestPushAfterCommit: once a shuffle is committed, pushes to its
// partitions (existing or new) fail with FailedPrecondition, other
// shuffles take pushes, and Commit is idempotent.
func TestPushAfterCommit(t *testing.T) {
	n := startNode(t, dirsConfig(t, 1))
	ctx := appCtx(t.Context(), testApp)
	mustPush(t, ctx, n.client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 10), newBatch(1, 1, 0, 0, 0, 0, 10)})
	if got := commit(t, ctx, n.client, 1); got != 2 {
		t.Fatalf("commit: %d partitions, want 2", got)
	}
	for _, b := range []*rsspb.Batch{newBatch(1, 0, 0, 1, 0, 0, 10), newBatch(1, 7, 0, 1, 0, 0, 10)} {
		res := push(ctx, n.client, nil, []*rsspb.Batch{b})
		wantCode(t, "push after commit", res.err, codes.FailedPrecondition, "committed")
	}
	mustPush(t, ctx, n.client, nil, []*rsspb.Batch{newBatch(2, 0, 0, 0, 0, 0, 10)})
	if got := commit(t, ctx, n.client, 1); got != 2 {
		t.Fatalf("second commit: %d partitions, want 2", got)
	}
	if got := metric(t, n.w, "basalt_rss_worker_push_rejected_total", "reason=committed"); got != 2 {
		t.Fatalf("committed rejections: %v, want 2", got)
	}
}

// TestFetchStates: fetching an uncommitted partition is
// FailedPrecondition, one the worker never had NotFound.
func TestFetchStates(t *testing.T) {
	n := startNode(t, dirsConfig(t, 1))
	ctx := appCtx(t.Context(), testApp)
	mustPush(t, ctx, n.client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 10)})
	_, err := fetch(ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1})
	wantCode(t, "fetch before commit", err, codes.FailedPrecondition, "not committed")
	commit(t, ctx, n.client, 1)
	for _, req := range []*rsspb.FetchRequest{{ShuffleId: 1, Partition: 1}, {ShuffleId: 1, Epoch: 1}, {ShuffleId: 9}} {
		_, err := fetch(ctx, n.client, req)
		wantCode(t, "fetch of a partition never pushed", err, codes.NotFound)
	}
	_, err = fetch(appCtx(t.Context(), "other-app"), n.client, &rsspb.FetchRequest{ShuffleId: 1})
	wantCode(t, "fetch by another application", err, codes.NotFound)
}

// TestNoApplication: calls without the application id are
// Unauthenticated; a malformed id is InvalidArgument.
func TestNoApplication(t *testing.T) {
	n := startNode(t, dirsConfig(t, 1))
	res := push(t.Context(), n.client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 10)})
	wantCode(t, "push without app", res.err, codes.Unauthenticated)
	_, err := n.client.Commit(t.Context(), &rsspb.CommitRequest{ShuffleId: 1})
	wantCode(t, "commit without app", err, codes.Unauthenticated)
	_, err = fetch(t.Context(), n.client, &rsspb.FetchRequest{ShuffleId: 1})
	wantCode(t, "fetch without app", err, codes.Unauthenticated)
	res = push(appCtx(t.Context(), "../etc"), n.client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 10)})
	wantCode(t, "push with a path as app", res.err, codes.InvalidArgument)
}

// TestDeleteShuffle: deleting one shuffle removes its files and index
// entries and refuses later pushes; deleting the application removes the
// rest; a restart finds nothing.
func TestDeleteShuffle(t *testing.T) {
	cfg := dirsConfig(t, 2)
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	for s := range int32(3) {
		mustPush(t, ctx, n.client, nil, []*rsspb.Batch{newBatch(s, 0, 0, 0, 0, 0, 10), newBatch(s, 1, 0, 0, 0, 0, 10)})
	}
	commit(t, ctx, n.client, 0)
	commit(t, ctx, n.client, 1) // shuffle 2 stays open
	if _, err := n.client.DeleteShuffle(t.Context(), &rsspb.DeleteShuffleRequest{AppId: testApp, ShuffleId: 0}); err != nil {
		t.Fatal(err)
	}
	_, err := fetch(ctx, n.client, &rsspb.FetchRequest{ShuffleId: 0})
	wantCode(t, "fetch of a deleted shuffle", err, codes.NotFound)
	res := push(ctx, n.client, nil, []*rsspb.Batch{newBatch(0, 5, 0, 0, 0, 0, 10)})
	wantCode(t, "push to a deleted shuffle", res.err, codes.NotFound, "deleted")
	mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1})
	if got := countFiles(t, cfg.Dirs); got != 4 {
		t.Fatalf("%d partition files after deleting shuffle 0, want 4", got)
	}
	if _, err := n.client.DeleteShuffle(ctx, &rsspb.DeleteShuffleRequest{ShuffleId: -1}); err != nil {
		t.Fatal(err)
	}
	if got := countFiles(t, cfg.Dirs); got != 0 {
		t.Fatalf("%d partition files after deleting the application, want 0", got)
	}
	if got := n.w.ActivePartitions(); got != 0 {
		t.Fatalf("%d active partitions after deleting the application", got)
	}
	n.stop()
	again := startNode(t, cfg)
	_, err = fetch(ctx, again.client, &rsspb.FetchRequest{ShuffleId: 1})
	wantCode(t, "fetch after restart", err, codes.NotFound)
}

func countFiles(t testing.TB, dirs []string) int {
	n := 0
	for _, d := range dirs {
		n += len(dataFiles(t, d))
	}
	return n
}

// TestRestart: a Worker opened again on the same directories serves every
// committed partition and deletes the uncommitted files.
func TestRestart(t *testing.T) {
	cfg := dirsConfig(t, 2)
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	committed := job(3, 3, 2)
	mustPush(t, ctx, n.client, nil, committed)
	commit(t, ctx, n.client, 1)
	mustPush(t, ctx, n.client, nil, []*rsspb.Batch{newBatch(2, 0, 0, 0, 0, 0, 100), newBatch(2, 1, 0, 0, 0, 0, 100)})
	if got := countFiles(t, cfg.Dirs); got != 5 {
		t.Fatalf("%d partition files before the restart, want 5", got)
	}
	n.stop()
	n = startNode(t, cfg)
	for p := range int32(3) {
		sameBatches(t, "after restart", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: p}), partitionOf(committed, p))
	}
	_, err := fetch(ctx, n.client, &rsspb.FetchRequest{ShuffleId: 2})
	wantCode(t, "fetch of an uncommitted partition after restart", err, codes.NotFound)
	if got := countFiles(t, cfg.Dirs); got != 3 {
		t.Fatalf("%d partition files after the restart, want the 3 committed", got)
	}
	res := push(ctx, n.client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 9, 0, 0, 10)})
	wantCode(t, "push to a shuffle committed before the restart", res.err, codes.FailedPrecondition)
}

// TestCommitSurvivesCrash: after a machine crash (unsynced writes lost),
// committed partitions read back exactly and the acknowledged but
// uncommitted batches are gone without a trace.
func TestCommitSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	cfg := worker.DefaultConfig()
	cfg.FS, cfg.Dirs, cfg.Logger = fs, []string{"/d0", "/d1"}, quiet
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	committed := job(3, 2, 2)
	mustPush(t, ctx, n.client, nil, committed)
	commit(t, ctx, n.client, 1)
	mustPush(t, ctx, n.client, nil, []*rsspb.Batch{newBatch(2, 0, 0, 0, 0, 0, 100)})
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	n.stop()
	cfg.FS = crashed
	n = startNode(t, cfg)
	for p := range int32(2) {
		sameBatches(t, "after the crash", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1, Partition: p}), partitionOf(committed, p))
	}
	_, err := fetch(ctx, n.client, &rsspb.FetchRequest{ShuffleId: 2})
	wantCode(t, "uncommitted partition after the crash", err, codes.NotFound)
}

// TestConfigValidate: defaults fill zero fields; bad fields are
// ErrInvalidConfig.
func TestConfigValidate(t *testing.T) {
	c := worker.Config{Dirs: []string{"/a"}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	d := worker.DefaultConfig()
	if c.MemoryLimitBytes != d.MemoryLimitBytes || c.FlushBytes != d.FlushBytes || c.FlushInterval != d.FlushInterval ||
		c.FetchChunkBytes != d.FetchChunkBytes || c.FS == nil || c.Logger == nil {
		t.Fatalf("defaults not filled: %+v", c)
	}
	for _, bad := range []worker.Config{
		{},
		{Dirs: []string{"/a", "/a"}},
		{Dirs: []string{""}},
		{Dirs: []string{"/a"}, MemoryLimitBytes: 10},
		{Dirs: []string{"/a"}, FlushBytes: -1},
	} {
		if err := bad.Validate(); !errors.Is(err, worker.ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want ErrInvalidConfig", bad, err)
		}
	}
	if _, err := worker.New(worker.Config{}); !errors.Is(err, worker.ErrInvalidConfig) {
		t.Fatalf("New with no dirs: %v", err)
	}
}
