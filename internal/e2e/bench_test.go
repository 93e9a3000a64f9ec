package e2e_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkVolume4K measures 4 KiB random writes and reads through the Go
// client against an MDS and three chunkservers running as processes on
// this machine, at queue depth 1 and 32, and, in the same run, the
// single-copy baseline: 4 KiB pwrite+fdatasync (and pread) on one
// preallocated local file.
//
//	go test -run '^$' -bench BenchmarkVolume4K -benchtime 5000x ./internal/e2e/
func BenchmarkVolume4K(b *testing.B) {
	const size = 256 << 20
	c := startClusterWith(b, "30s") // the chunkservers' default
	for _, qd := range []int{1, 32} {
		b.Run(fmt.Sprintf("basalt/randwrite/qd=%d", qd), func(b *testing.B) {
			v := benchVolume(b, c, size)
			runIO(b, qd, size, func(ctx context.Context, p []byte, off int64) error {
				_, err := v.WriteAt(ctx, p, off)
				return err
			})
		})
		b.Run(fmt.Sprintf("basalt/randread/qd=%d", qd), func(b *testing.B) {
			v := benchVolume(b, c, size)
			runIO(b, qd, size, func(ctx context.Context, p []byte, off int64) error {
				_, err := v.ReadAt(ctx, p, off)
				return err
			})
		})
		b.Run(fmt.Sprintf("local-file/randwrite-fdatasync/qd=%d", qd), func(b *testing.B) {
			f := localFile(b, size)
			runIO(b, qd, size, func(_ context.Context, p []byte, off int64) error {
				if _, err := f.WriteAt(p, off); err != nil {
					return err
				}
				return syscall.Fdatasync(int(f.Fd()))
			})
		})
		b.Run(fmt.Sprintf("local-file/randread/qd=%d", qd), func(b *testing.B) {
			f := localFile(b, size)
			runIO(b, qd, size, func(_ context.Context, p []byte, off int64) error {
				_, err := f.ReadAt(p, off)
				return err
			})
		})
	}
}

// benchVolume returns a new written-through volume of size bytes on the
// shared benchmark cluster (every segment allocated, so reads hit the
// chunkservers and writes measure I/O, not allocation).
func benchVolume(b *testing.B, c *cluster, size int64) interface {
	WriteAt(context.Context, []byte, int64) (int, error)
	ReadAt(context.Context, []byte, int64) (int, error)
} {
	b.Helper()
	name := fmt.Sprintf("bench%d", volumeSeq.Add(1))
	c.createVolume(name, fmt.Sprint(size))
	v, err := c.tryOpen(name, true)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	buf := make([]byte, 1<<20)
	_, _ = rand.Read(buf)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := v.WriteAt(context.Background(), buf, off); err != nil {
			b.Fatal(err)
		}
	}
	return v
}

var volumeSeq atomic.Int64

func localFile(b *testing.B, size int64) *os.File {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "baseline"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	buf := make([]byte, 1<<20)
	_, _ = rand.Read(buf)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return f
}

// runIO runs b.N random 4 KiB operations from qd goroutines and reports
// IOPS and latency percentiles.
func runIO(b *testing.B, qd int, size int64, op func(context.Context, []byte, int64) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, qd)
	b.SetBytes(4096)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range qd {
		wg.Go(func() {
			p := make([]byte, 4096)
			_, _ = rand.Read(p)
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				off := int64(randUint64()%uint64(size/4096)) * 4096
				t0 := time.Now()
				if err := op(context.Background(), p, off); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "IOPS")
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op")
}

func randUint64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
