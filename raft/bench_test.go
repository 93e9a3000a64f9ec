package raft_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"basalt/internal/pebbleutil"
	"basalt/raft"
)

// BenchmarkPropose measures 4 KiB proposals on 3 hosts over loopback gRPC
// with Pebble on disk (fsync on), at concurrency 1 and 256, with 1 and
// 1,000 groups. Each op is one proposal acknowledged after it is committed
// on a majority and applied on the leader. Reported: commits/s, p50 and
// p99 latency, and entries per fsync (group commit).
//
//	go test -run '^$' -bench BenchmarkPropose -benchtime 20000x ./raft/
func BenchmarkPropose(b *testing.B) {
	for _, groups := range []int{1, 1000} {
		for _, conc := range []int{1, 256} {
			b.Run(fmt.Sprintf("groups=%d/conc=%d", groups, conc), func(b *testing.B) {
				benchPropose(b, groups, conc)
			})
		}
	}
}

func benchPropose(b *testing.B, groups, conc int) {
	c := newGRPCCluster(b, 3, func(cfg *raft.Config) {
		cfg.DisableSync = os.Getenv("BENCH_NOSYNC") != ""
		if v := os.Getenv("BENCH_HB"); v != "" {
			cfg.HeartbeatTicks, _ = strconv.Atoi(v)
		}
	})
	c.createGroups(groups)
	leaders := c.leaders(groups, 60*time.Second)
	leader := make([]atomic.Uint64, groups+1)
	for g, l := range leaders {
		leader[g].Store(l)
	}
	stopCompact := c.compactEvery(groups, 500*time.Millisecond)
	defer stopCompact()
	payload := make([]byte, 4096)
	_, _ = rand.Read(payload)

	fsyncs0 := c.fsyncs()
	msgs0, batches0 := c.transportCount("messages_sent_total"), c.transportCount("batches_sent_total")
	cpu0 := cpuTime()
	b.SetBytes(int64(len(payload)))
	lat, elapsed := runLoad(b, conc, func(i int64) error {
		g := uint64(i%int64(groups)) + 1
		return c.propose(context.Background(), g, &leader[g], payload)
	})
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/commit")
	b.ReportMetric((c.transportCount("messages_sent_total")-msgs0)/float64(b.N), "msgs/commit")
	b.ReportMetric((c.transportCount("batches_sent_total")-batches0)/float64(b.N), "batches/commit")
	reportLatency(b, lat, elapsed, c.fsyncs()-fsyncs0)
	sum, n := c.histogram("basalt_raft_fsync_latency_seconds")
	if n > 0 {
		b.ReportMetric(sum/n*1e6, "fsync-µs")
	}
}

// runLoad resets the timer and runs op for i = 1..b.N from conc goroutines;
// it returns every op's latency and the wall time.
func runLoad(b *testing.B, conc int, op func(i int64) error) ([]time.Duration, time.Duration) {
	var next atomic.Int64
	lat := make([][]time.Duration, conc)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				t0 := time.Now()
				if err := op(i); err != nil {
					b.Errorf("op %d: %v", i, err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	return slices.Concat(lat...), elapsed
}

// cpuTime returns the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSyncedWriteBaseline is the single-copy reference for
// BenchmarkPropose, run on the same disk in the same run: 4 KiB writes to
// one Pebble DB, each acknowledged after a synced commit (Pebble commits
// concurrent writers with one fsync), at concurrency 1 and 256. No
// replication, no network, no raft.
func BenchmarkSyncedWriteBaseline(b *testing.B) {
	for _, conc := range []int{1, 256} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			db, err := pebble.Open(b.TempDir(), &pebble.Options{MemTableSize: 64 << 20, Logger: pebbleutil.Logger(slog.New(slog.DiscardHandler))})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			payload := make([]byte, 4096)
			_, _ = rand.Read(payload)
			cpu0 := cpuTime()
			b.SetBytes(int64(len(payload)))
			lat, elapsed := runLoad(b, conc, func(i int64) error {
				return db.Set(binary.BigEndian.AppendUint64(nil, uint64(i)), payload, pebble.Sync)
			})
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/commit")
			reportLatency(b, lat, elapsed, 0)
		})
	}
}

func reportLatency(b *testing.B, all []time.Duration, elapsed time.Duration, fsyncs float64) {
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	q := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commits/s")
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	if fsyncs > 0 {
		b.ReportMetric(float64(len(all))*3/fsyncs, "entries/fsync")
	}
	b.ReportMetric(0, "ns/op")
}

// compactEvery truncates logs in the background, as state machines that
// checkpoint would; it returns a function that stops it.
func (c *grpcCluster) compactEvery(groups int, every time.Duration) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				c.compactAll(groups)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// transportCount sums a gRPC transport counter (name without prefix) over
// all hosts.
func (c *grpcCluster) transportCount(suffix string) float64 {
	var total float64
	for _, n := range c.nodes {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(n.tr.Collectors()...)
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if strings.HasSuffix(mf.GetName(), suffix) {
				for _, m := range mf.GetMetric() {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// fsyncs sums the fsync counters of all hosts.
func (c *grpcCluster) fsyncs() float64 {
	var total float64
	for _, n := range c.nodes {
		total += counterValue(n.host, "basalt_raft_fsyncs_total")
	}
	return total
}

// histogram sums a histogram's sum and count over all hosts.
func (c *grpcCluster) histogram(name string) (sum, count float64) {
	for _, n := range c.nodes {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(n.host.Collectors()...)
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) > 0 {
				h := mf.GetMetric()[0].GetHistogram()
				sum += h.GetSampleSum()
				count += float64(h.GetSampleCount())
			}
		}
	}
	return sum, count
}

// counterValue returns the value of the host's metric called name.
func counterValue(h *raft.Host, name string) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}
