package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/internal/daemon"
	"basalt/internal/testwait"
	"basalt/rss/gossip"
	"basalt/rss/rsspb"
	"basalt/rss/worker"
)

// lockedBuffer is a bytes.Buffer safe for the daemon's concurrent logs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon starts a daemon with args and runs it until the returned
// stop is called; stop returns Run's result. The daemon's log is shown if
// the test fails.
func startDaemon(t *testing.T, args ...string) (*worker.Daemon, func() error) {
	t.Helper()
	d, stop, _ := runDaemon(t, args...)
	return d, stop
}

// runDaemon is startDaemon that also returns a channel closed when Run
// returns (by itself, or after stop).
func runDaemon(t *testing.T, args ...string) (*worker.Daemon, func() error, <-chan struct{}) {
	t.Helper()
	logs := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	})
	d, err := worker.StartDaemon(args, logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var runErr error
	go func() { runErr = d.Run(ctx); close(exited) }()
	stop := func() error {
		cancel()
		<-exited
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return d, stop, exited
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func dialDaemon(t *testing.T, addr string) rsspb.WorkerClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return rsspb.NewWorkerClient(conn)
}

// TestDaemon: the daemon serves gRPC, /healthz and /metrics, gossips its
// address and live figures as a worker to a master that joins it, and on
// shutdown (without waiting for applications: --shutdown-deadline 0) lets
// the pushes in flight be acknowledged before the stream ends with
// Unavailable, then returns nil.
func TestDaemon(t *testing.T) {
	dir := t.TempDir()
	dirs := filepath.Join(dir, "a") + "," + filepath.Join(dir, "b")
	d, stop := startDaemon(t, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--dirs", dirs,
		"--gossip-bind", "127.0.0.1:0", "--id", "w1", "--memory-limit", "1048576", "--flush-interval", "3s",
		"--shutdown-deadline", "0")
	if code, body := httpGet(t, "http://"+d.HTTPAddr()+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d %s", code, body)
	}
	_, body := httpGet(t, "http://"+d.HTTPAddr()+"/metrics")
	for _, want := range []string{"basalt_rss_worker_memory_limit_bytes 1.048576e+06", `basalt_rss_worker_disk_free_bytes{dir="` + filepath.Join(dir, "b"),
		`basalt_rss_worker_push_rejected_total{reason="memory"} 0`, "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}

	master, err := gossip.Start(t.Context(), gossip.Config{BindAddr: "127.0.0.1:0", Join: []string{d.GossipAddr()},
		Meta: func() gossip.Meta { return gossip.Meta{ID: "master", Role: gossip.RoleMaster} }, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	seen := func(want func(gossip.Meta) error) func() error {
		return func() error {
			ms := master.Members()
			i := slices.IndexFunc(ms, func(m gossip.Meta) bool { return m.ID == "w1" })
			if i < 0 {
				return fmt.Errorf("worker not among %v", ms)
			}
			return want(ms[i])
		}
	}
	testwait.For(t, waitTimeout, "the master sees the worker", seen(func(m gossip.Meta) error {
		if m.Role != gossip.RoleWorker || m.Addr != d.Addr() || m.DiskFreeBytes == 0 {
			return fmt.Errorf("meta %+v", m)
		}
		return nil
	}))

	client := dialDaemon(t, d.Addr())
	ctx, cancel := context.WithCancel(appCtx(t.Context(), testApp))
	defer cancel()
	st, err := client.Push(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for s := range int32(2) {
		if err := st.Send(&rsspb.PushRequest{Batches: []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, s, 1000)}}); err != nil {
			t.Fatal(err)
		}
	}
	// The batches wait up to 3 s in memory before they are written and
	// acknowledged: shutdown begins while they are in flight.
	testwait.Until(t, waitTimeout, "both batches received", func() bool { return d.Worker().MemoryUsedBytes() == 2*(32+1000) })
	testwait.For(t, waitTimeout, "the master sees the active partition", seen(func(m gossip.Meta) error {
		if m.ActivePartitions != 1 || m.MemoryUsedBytes != 2*(32+1000) {
			return fmt.Errorf("meta %+v", m)
		}
		return nil
	}))

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	acked := int64(0)
	for {
		resp, err := st.Recv()
		if err != nil {
			wantCode(t, "push stream at shutdown", err, codes.Unavailable)
			break
		}
		acked = resp.GetAcked()
	}
	if acked != 2 {
		t.Fatalf("acked %d of the 2 batches in flight at shutdown", acked)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	testwait.For(t, waitTimeout, "the worker leaves gossip", func() error {
		if slices.ContainsFunc(master.Members(), func(m gossip.Meta) bool { return m.ID == "w1" }) {
			return errors.New("still a member")
		}
		return nil
	})
}

// TestDaemonConfig: --help is not an error; the YAML file is read and
// flags override it; bad settings are daemon.ErrConfig; without gossip
// the daemon still serves, and the id defaults to host:port.
func TestDaemonConfig(t *testing.T) {
	if err := worker.RunDaemon(t.Context(), []string{"--help"}, io.Discard); err != nil {
		t.Fatalf("--help: %v", err)
	}
	dir := t.TempDir()
	yaml := filepath.Join(dir, "w.yaml")
	text := fmt.Sprintf("listen: 127.0.0.1:0\nhttp: 127.0.0.1:0\ndirs: %s\ngossip_bind: \"\"\nmemory_limit: 10\n", filepath.Join(dir, "data"))
	if err := os.WriteFile(yaml, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--config", yaml},
		{"--config", yaml, "--memory-limit", "4096", "--log-level", "loud"},
		{"--config", yaml, "--memory-limit", "4096", "--dirs", ""},
		{"--config", yaml, "--memory-limit", "4096", "--app-memory-limit", "8192"}, // a share above the budget
		{"--no-such-flag"},
	} {
		if _, err := worker.StartDaemon(args, io.Discard); !errors.Is(err, daemon.ErrConfig) {
			t.Errorf("%v: got %v, want ErrConfig", args, err)
		}
	}
	d, stop := startDaemon(t, "--config", yaml, "--memory-limit", "4096", "--shutdown-deadline", "0")
	if d.GossipAddr() != "" {
		t.Fatalf("gossip started with an empty gossip_bind: %s", d.GossipAddr())
	}
	host, _ := os.Hostname()
	if _, port, _ := strings.Cut(d.Addr(), ":"); d.ID() != host+":"+port {
		t.Fatalf("default id %q, want %s:%s", d.ID(), host, port)
	}
	ctx := appCtx(t.Context(), testApp)
	client := dialDaemon(t, d.Addr())
	mustPush(t, ctx, client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 100)})
	commit(t, ctx, client, 1)
	if got := mustFetch(t, ctx, client, &rsspb.FetchRequest{ShuffleId: 1}); len(got) != 1 {
		t.Fatalf("fetched %d batches", len(got))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
