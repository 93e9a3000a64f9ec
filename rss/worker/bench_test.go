package worker_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"basalt/rss/rsspb"
	"basalt/rss/worker"
)

// Benchmark shape: benchPartitions partition files, each receiving
// benchBatches batches of benchBatchBytes (16 MiB per iteration).
const (
	benchPartitions = 4
	benchBatches    = 16
	benchBatchBytes = 256 << 10
)

// benchData returns the batches of one iteration, one list per
// partition.
func benchData() [][]*rsspb.Batch {
	out := make([][]*rsspb.Batch, benchPartitions)
	for p := range int32(benchPartitions) {
		for s := range int32(benchBatches) {
			out[p] = append(out[p], newBatch(0, p, 0, p, 0, s, benchBatchBytes))
		}
	}
	return out
}

// BenchmarkPushFetch measures a shuffle's round trip through one worker
// on loopback gRPC with the data directory on local disk: per iteration
// 4 concurrent Push streams (one per partition) of 16 batches of 256 KiB,
// Commit (fsync), 4 concurrent Fetches of the whole partitions, and
// DeleteShuffle. MB/s counts the 16 MiB once (pushed and fetched);
// push-MB/s and fetch-MB/s time each phase alone (push-MB/s includes the
// commit). with-replica adds a second worker as every partition's
// replica. Compare BenchmarkLocalFiles.
func BenchmarkPushFetch(b *testing.B) {
	for _, replicated := range []bool{false, true} {
		name := "primary-only"
		if replicated {
			name = "with-replica"
		}
		b.Run(name, func(b *testing.B) { benchPushFetch(b, replicated) })
	}
}

func benchPushFetch(b *testing.B, replicated bool) {
	n := startNode(b, dirsConfig(b, 1))
	var replica *rsspb.WorkerRef
	var r *node
	if replicated {
		r = startNode(b, dirsConfig(b, 1))
		replica = r.ref()
	}
	ctx := appCtx(b.Context(), testApp)
	data := benchData()
	b.SetBytes(benchPartitions * benchBatches * benchBatchBytes)
	var pushTime, fetchTime time.Duration
	shuffle := int32(0)
	for b.Loop() {
		shuffle++
		for _, bs := range data {
			for _, bt := range bs {
				bt.ShuffleId = shuffle
			}
		}
		start := time.Now()
		parallel(b, func(p int) error {
			if res := push(ctx, n.client, replica, data[p]); res.err != nil || res.acked != benchBatches {
				return fmt.Errorf("push: acked %d, %w", res.acked, res.err)
			}
			return nil
		})
		for _, w := range []*node{n, r} {
			if w != nil {
				commit(b, ctx, w.client, shuffle)
			}
		}
		mid := time.Now()
		parallel(b, func(p int) error {
			bs, err := fetch(ctx, n.client, &rsspb.FetchRequest{ShuffleId: shuffle, Partition: int32(p)})
			if err == nil && len(bs) != benchBatches {
				err = fmt.Errorf("fetched %d batches", len(bs))
			}
			return err
		})
		pushTime, fetchTime = pushTime+mid.Sub(start), fetchTime+time.Since(mid)
		for _, w := range []*node{n, r} {
			if w != nil {
				if _, err := w.client.DeleteShuffle(ctx, &rsspb.DeleteShuffleRequest{ShuffleId: shuffle}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	reportPhases(b, pushTime, fetchTime)
}

// BenchmarkLocalFiles is BenchmarkPushFetch's baseline: the same bytes
// written straight to 4 local files (256 KiB writes, concurrently), each
// fsynced and closed, then read back (4 MiB reads) and removed.
// push-MB/s is write+fsync, fetch-MB/s the read.
func BenchmarkLocalFiles(b *testing.B) {
	dir := b.TempDir()
	data := benchData()
	b.SetBytes(benchPartitions * benchBatches * benchBatchBytes)
	var writeTime, readTime time.Duration
	for b.Loop() {
		start := time.Now()
		parallel(b, func(p int) error { return writeFile(filepath.Join(dir, fmt.Sprint(p)), data[p]) })
		mid := time.Now()
		parallel(b, func(p int) error { return readFile(filepath.Join(dir, fmt.Sprint(p))) })
		writeTime, readTime = writeTime+mid.Sub(start), readTime+time.Since(mid)
		for p := range benchPartitions {
			if err := os.Remove(filepath.Join(dir, fmt.Sprint(p))); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportPhases(b, writeTime, readTime)
}

func writeFile(path string, bs []*rsspb.Batch) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for _, bt := range bs {
		if _, err := f.Write(bt.GetData()); err != nil {
			return errors.Join(err, f.Close())
		}
	}
	return errors.Join(f.Sync(), f.Close())
}

func readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	total := 0
	for {
		n, err := f.Read(buf)
		total += n
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if total != benchBatches*benchBatchBytes {
		return fmt.Errorf("read %d bytes", total)
	}
	return nil
}

// parallel runs fn for every partition concurrently and fails the
// benchmark on any error.
func parallel(b *testing.B, fn func(p int) error) {
	var wg sync.WaitGroup
	errs := make([]error, benchPartitions)
	for p := range benchPartitions {
		wg.Go(func() { errs[p] = fn(p) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
}

// reportPhases reports the throughput of each phase in MB/s.
func reportPhases(b *testing.B, first, second time.Duration) {
	bytes := float64(b.N) * benchPartitions * benchBatches * benchBatchBytes / 1e6
	b.ReportMetric(bytes/first.Seconds(), "push-MB/s")
	b.ReportMetric(bytes/second.Seconds(), "fetch-MB/s")
}

// BenchmarkCommitWide measures the commit of a wide shuffle: one 4 KiB
// batch pushed to each of 2,000 partitions (one stream), then Commit
// (flush, fsync and close 2,000 files, one synced index batch). The
// sequential case (CommitParallelism 1) is the same-run baseline.
func BenchmarkCommitWide(b *testing.B) {
	const parts = 2000
	for _, par := range []int{1, worker.DefaultCommitParallelism} {
		b.Run(fmt.Sprintf("parallelism-%d", par), func(b *testing.B) {
			cfg := dirsConfig(b, 1)
			cfg.CommitParallelism = par
			n := startNode(b, cfg)
			ctx := appCtx(b.Context(), testApp)
			shuffle := int32(0)
			var commitTime time.Duration
			for b.Loop() {
				shuffle++
				var bs []*rsspb.Batch
				for p := range int32(parts) {
					bs = append(bs, newBatch(shuffle, p, 0, 0, 0, 0, 4<<10))
				}
				if res := push(ctx, n.client, nil, bs); res.err != nil || res.acked != parts {
					b.Fatalf("push: acked %d, %v", res.acked, res.err)
				}
				start := time.Now()
				if got := commit(b, ctx, n.client, shuffle); got != parts {
					b.Fatalf("committed %d partition files, want %d", got, parts)
				}
				commitTime += time.Since(start)
				if _, err := n.client.DeleteShuffle(ctx, &rsspb.DeleteShuffleRequest{ShuffleId: shuffle}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(commitTime.Milliseconds())/float64(b.N), "commit-ms/op")
		})
	}
}
