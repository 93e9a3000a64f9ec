package worker_test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"basalt/rss/rsspb"
	"basalt/rss/worker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait for background work.
const waitTimeout = 10 * time.Second

const testApp = "app-1"

// node is a Worker served by an in-process gRPC server on 127.0.0.1.
type node struct {
	t      testing.TB
	cfg    worker.Config
	w      *worker.Worker
	srv    *grpc.Server
	addr   string
	conn   *grpc.ClientConn
	client rsspb.WorkerClient
	once   sync.Once
}

// quiet is a logger that drops everything.
var quiet = slog.New(slog.DiscardHandler)

// startNode opens a Worker with cfg (a quiet logger unless one is set)
// and serves it; the node stops at the end of the test.
func startNode(t testing.TB, cfg worker.Config) *node {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(worker.MaxMessageBytes))
	rsspb.RegisterWorkerServer(srv, w)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(worker.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, cfg: cfg, w: w, srv: srv, addr: lis.Addr().String(), conn: conn, client: rsspb.NewWorkerClient(conn)}
	t.Cleanup(n.stop)
	return n
}

// stop stops serving and closes the Worker (once).
func (n *node) stop() {
	n.once.Do(func() {
		_ = n.conn.Close()
		n.srv.Stop()
		if err := n.w.Close(); err != nil {
			n.t.Errorf("closing worker: %v", err)
		}
	})
}

func (n *node) ref() *rsspb.WorkerRef { return &rsspb.WorkerRef{Id: n.addr, Addr: n.addr} }

// dirsConfig returns a Config on real temporary directories.
func dirsConfig(t testing.TB, ndirs int) worker.Config {
	cfg := worker.DefaultConfig()
	cfg.Dirs, cfg.Logger = nil, quiet
	for range ndirs {
		cfg.Dirs = append(cfg.Dirs, t.TempDir())
	}
	return cfg
}

// appCtx returns ctx carrying app's id in the metadata.
func appCtx(ctx context.Context, app string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, worker.MetadataApp, app, worker.MetadataToken, "secret")
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// bid identifies a batch within its partition.
type bid struct{ m, attempt, seq int32 }

// newBatch returns a batch whose data (size bytes) is derived from its
// identity, with a correct CRC.
func newBatch(shuffle, part, epoch, m, attempt, seq int32, size int) *rsspb.Batch {
	rng := rand.New(rand.NewPCG(uint64(shuffle)<<48|uint64(part)<<32|uint64(epoch)<<16|uint64(m), uint64(attempt)<<32|uint64(seq)))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return &rsspb.Batch{ShuffleId: shuffle, Partition: part, Epoch: epoch, MapIndex: m, Attempt: attempt, Seq: seq,
		Crc32C: crc32.Checksum(data, castagnoli), Data: data}
}

// pushResult is what a Push stream ended with.
type pushResult struct {
	acked int64
	err   error // nil: clean end
}

// push sends each batch in its own request on one Push stream (naming
// replica, if set), closes the send side and returns the last
// acknowledgement and how the stream ended. Sending does not wait for
// acknowledgements.
func push(ctx context.Context, c rsspb.WorkerClient, replica *rsspb.WorkerRef, batches []*rsspb.Batch) pushResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Push(ctx)
	if err != nil {
		return pushResult{err: err}
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for _, b := range batches {
			if st.Send(&rsspb.PushRequest{Replica: replica, Batches: []*rsspb.Batch{b}}) != nil {
				return
			}
		}
		_ = st.CloseSend()
	}()
	var res pushResult
	for {
		resp, err := st.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				res.err = err
			}
			cancel()
			<-sent
			return res
		}
		res.acked = resp.GetAcked()
	}
}

// mustPush pushes and fails the test unless every batch is acknowledged.
func mustPush(t testing.TB, ctx context.Context, c rsspb.WorkerClient, replica *rsspb.WorkerRef, batches []*rsspb.Batch) {
	t.Helper()
	res := push(ctx, c, replica, batches)
	if res.err != nil || res.acked != int64(len(batches)) {
		t.Fatalf("push of %d batches: acked %d, err %v", len(batches), res.acked, res.err)
	}
}

// fetch reads a whole Fetch stream.
func fetch(ctx context.Context, c rsspb.WorkerClient, req *rsspb.FetchRequest) ([]*rsspb.Batch, error) {
	bs, _, err := fetchResponses(ctx, c, req)
	return bs, err
}

// fetchResponses reads a whole Fetch stream and also returns each
// response's batch data bytes.
func fetchResponses(ctx context.Context, c rsspb.WorkerClient, req *rsspb.FetchRequest) ([]*rsspb.Batch, []int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Fetch(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	var bs []*rsspb.Batch
	var sizes []int
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return bs, sizes, nil
		}
		if err != nil {
			return bs, sizes, err
		}
		n := 0
		for _, b := range resp.GetBatches() {
			n += len(b.GetData())
		}
		bs, sizes = append(bs, resp.GetBatches()...), append(sizes, n)
	}
}

// mustFetch fetches and fails the test on error.
func mustFetch(t testing.TB, ctx context.Context, c rsspb.WorkerClient, req *rsspb.FetchRequest) []*rsspb.Batch {
	t.Helper()
	bs, err := fetch(ctx, c, req)
	if err != nil {
		t.Fatalf("fetch shuffle %d partition %d epoch %d: %v", req.GetShuffleId(), req.GetPartition(), req.GetEpoch(), err)
	}
	return bs
}

// commit commits a shuffle and returns the partition count.
func commit(t testing.TB, ctx context.Context, c rsspb.WorkerClient, shuffle int32) int32 {
	t.Helper()
	resp, err := c.Commit(ctx, &rsspb.CommitRequest{ShuffleId: shuffle})
	if err != nil {
		t.Fatalf("commit shuffle %d: %v", shuffle, err)
	}
	return resp.GetPartitions()
}

// sameBatches fails unless got and want hold the same batches in the same
// order (identity, CRC and data).
func sameBatches(t testing.TB, what string, got, want []*rsspb.Batch) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d batches, want %d: got %v, want %v", what, len(got), len(want), ids(got), ids(want))
	}
	for i := range got {
		if err := diffBatch(got[i], want[i]); err != nil {
			t.Fatalf("%s: batch %d: %v", what, i, err)
		}
	}
}

// diffBatch describes how two batches differ, or returns nil.
func diffBatch(g, w *rsspb.Batch) error {
	switch {
	case g.GetShuffleId() != w.GetShuffleId() || g.GetPartition() != w.GetPartition() || g.GetEpoch() != w.GetEpoch():
		return fmt.Errorf("got shuffle/partition/epoch %d/%d/%d, want %d/%d/%d", g.GetShuffleId(), g.GetPartition(), g.GetEpoch(),
			w.GetShuffleId(), w.GetPartition(), w.GetEpoch())
	case idOf(g) != idOf(w):
		return fmt.Errorf("got %v, want %v", idOf(g), idOf(w))
	case g.GetCrc32C() != w.GetCrc32C() || string(g.GetData()) != string(w.GetData()):
		return fmt.Errorf("%v: data or crc differ", idOf(g))
	}
	return nil
}

func idOf(b *rsspb.Batch) bid { return bid{b.GetMapIndex(), b.GetAttempt(), b.GetSeq()} }

func ids(bs []*rsspb.Batch) []bid {
	out := make([]bid, len(bs))
	for i, b := range bs {
		out[i] = idOf(b)
	}
	return out
}

// sortedByID returns bs sorted by (map, attempt, seq).
func sortedByID(bs []*rsspb.Batch) []*rsspb.Batch {
	out := slices.Clone(bs)
	slices.SortStableFunc(out, func(a, b *rsspb.Batch) int {
		x, y := idOf(a), idOf(b)
		if x.m != y.m {
			return int(x.m - y.m)
		}
		if x.attempt != y.attempt {
			return int(x.attempt - y.attempt)
		}
		return int(x.seq - y.seq)
	})
	return out
}

// partitionOf returns the batches of partition p, in order.
func partitionOf(bs []*rsspb.Batch, p int32) []*rsspb.Batch {
	var out []*rsspb.Batch
	for _, b := range bs {
		if b.GetPartition() == p {
			out = append(out, b)
		}
	}
	return out
}

// wantCode fails unless err is a status with code c whose message
// contains every one of parts.
func wantCode(t testing.TB, what string, err error, c codes.Code, parts ...string) {
	t.Helper()
	if status.Code(err) != c {
		t.Fatalf("%s: got %v, want code %v", what, err, c)
	}
	msg := status.Convert(err).Message()
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Fatalf("%s: message %q does not mention %q", what, msg, p)
		}
	}
}

// metric returns the value of the counter or gauge name with the given
// label values (name=value pairs) among the worker's collectors.
func metric(t testing.TB, w *worker.Worker, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			if hasLabels(have, labels) {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// hasLabels reports whether have includes every name=value pair of want.
func hasLabels(have map[string]string, want []string) bool {
	for _, kv := range want {
		name, value, _ := strings.Cut(kv, "=")
		if v, ok := have[name]; !ok || v != value {
			return false
		}
	}
	return true
}
