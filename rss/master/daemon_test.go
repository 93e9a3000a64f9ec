package master_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"basalt/internal/daemon"
	"basalt/internal/testnet"
	"basalt/internal/testwait"
	"basalt/rss/gossip"
	"basalt/rss/master"
	"basalt/rss/rsspb"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// servingRE matches the log line RunDaemon writes once it listens.
var servingRE = regexp.MustCompile(`msg="rss master serving" grpc=(\S+) http=(\S+) gossip=(\S+)`)

// TestRunDaemon runs the daemon in-process from a YAML file with a gossip
// worker joining it, checks Status, RegisterApplication, /healthz and
// /metrics, and stops it by cancelling its context.
func TestRunDaemon(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "rss-master.yaml")
	yaml := "listen: 127.0.0.1:0\nhttp: 127.0.0.1:0\ngossip_bind: 127.0.0.1:0\napp_lease: 30s\nlog_level: debug\n"
	noErr(t, os.WriteFile(cfg, []byte(yaml), 0o644))
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- master.RunDaemon(runCtx, []string{"--config", cfg}, logs) }()
	var m []string
	testwait.For(t, waitTimeout, "the daemon's serving log line", func() error {
		if m = servingRE.FindStringSubmatch(logs.String()); m == nil {
			return errors.New("not logged yet")
		}
		return nil
	})
	grpcAddr, httpAddr, gossipAddr := m[1], m[2], m[3]

	startWorker(t, gossipAddr)
	client := dialMaster(t, grpcAddr)
	testwait.For(t, waitTimeout, "the worker in Status", func() error {
		st, err := client.Status(t.Context(), &rsspb.StatusRequest{})
		if err != nil {
			return err
		}
		if len(st.GetWorkers()) != 1 || st.GetWorkers()[0].GetWorker().GetId() != "w1" {
			return fmt.Errorf("status %v, want worker w1 only", st)
		}
		return nil
	})
	resp, err := client.RegisterApplication(t.Context(), &rsspb.RegisterApplicationRequest{AppId: "app"})
	noErr(t, err)
	if resp.GetLeaseMs() != 30000 {
		t.Errorf("lease %d ms, want the configured 30000", resp.GetLeaseMs())
	}
	if body := httpGet(t, httpAddr, "/healthz"); body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}
	metrics := httpGet(t, httpAddr, "/metrics")
	for _, want := range []string{"basalt_rss_master_live_workers 1", "basalt_rss_master_applications 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	cancel()
	select {
	case err := <-done:
		noErr(t, err)
	case <-time.After(waitTimeout):
		t.Fatal("RunDaemon did not return after cancel")
	}
}

// startWorker starts a gossip node with role worker joining join.
func startWorker(t *testing.T, join string) {
	t.Helper()
	meta := gossip.Meta{ID: "w1", Addr: "127.0.0.1:1", DiskFreeBytes: 1 << 40, Role: gossip.RoleWorker}
	n, err := gossip.Start(t.Context(), gossip.Config{
		BindAddr: "127.0.0.1:0", Join: []string{join}, Meta: func() gossip.Meta { return meta },
	})
	noErr(t, err)
	t.Cleanup(func() { noErr(t, n.Close()) })
}

// dialMaster returns a client of the master at addr.
func dialMaster(t *testing.T, addr string) rsspb.MasterClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	noErr(t, err)
	t.Cleanup(func() { noErr(t, cc.Close()) })
	return rsspb.NewMasterClient(cc)
}

// httpGet returns the body of a 200 response to GET path.
func httpGet(t *testing.T, addr, path string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + path)
	noErr(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	noErr(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return string(body)
}

func TestRunDaemonBadConfig(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	noErr(t, os.WriteFile(bad, []byte("listn: 127.0.0.1:0\n"), 0o644))
	for name, args := range map[string][]string{
		"unknown key":   {"--config", bad},
		"unknown flag":  {"--nope"},
		"bad log level": {"--log-level", "loud"},
		"bad lease":     {"--app-lease", "soon"},
	} {
		err := master.RunDaemon(context.Background(), args, io.Discard)
		if !errors.Is(err, daemon.ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
	err := master.RunDaemon(context.Background(), []string{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--gossip-bind", "127.0.0.1:0", "--app-lease", "-1s"}, io.Discard)
	if !errors.Is(err, master.ErrInvalidConfig) {
		t.Errorf("negative lease: got %v, want ErrInvalidConfig", err)
	}
	if err := master.RunDaemon(context.Background(), []string{"--help"}, io.Discard); err != nil {
		t.Errorf("--help: %v", err)
	}
}

// TestReplicatedDaemonKeepsItsStateAcrossRestart: a master with
// --raft-id is a raft group (here of one) keeping its State under --data:
// stopped and started again on the same directory, the application it
// registered is still there with its token, which a master without
// replication would have forgotten.
func TestReplicatedDaemonKeepsItsStateAcrossRestart(t *testing.T) {
	listen := testnet.FreeAddr(t)
	args := []string{"--listen", listen, "--http", "127.0.0.1:0", "--gossip-bind", "127.0.0.1:0",
		"--raft-id", "1", "--raft-peers", "1=" + listen, "--data", t.TempDir(), "--checkpoint-interval", "100ms"}
	run := func(t *testing.T, body func(rsspb.MasterClient)) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- master.RunDaemon(ctx, args, io.Discard) }()
		body(dialMaster(t, listen))
		cancel()
		noErr(t, <-done)
	}
	var token string
	run(t, func(client rsspb.MasterClient) {
		testwait.For(t, waitTimeout, "the master registering an application", func() error {
			resp, err := client.RegisterApplication(t.Context(), &rsspb.RegisterApplicationRequest{AppId: "kept"})
			token = resp.GetToken()
			return err
		})
		time.Sleep(300 * time.Millisecond) // a checkpoint and a log truncation
	})
	run(t, func(client rsspb.MasterClient) {
		ctx := metadata.AppendToOutgoingContext(t.Context(), master.MetadataApp, "kept", master.MetadataToken, token)
		testwait.For(t, waitTimeout, "a heartbeat of the application registered before the restart", func() error {
			_, err := client.ApplicationHeartbeat(ctx, &rsspb.ApplicationHeartbeatRequest{})
			return err
		})
		_, err := client.RegisterApplication(t.Context(), &rsspb.RegisterApplicationRequest{AppId: "kept"})
		if status.Code(err) != codes.AlreadyExists {
			t.Errorf("registering the kept application again without its token: %v, want AlreadyExists", err)
		}
	})
}

func TestReplicatedDaemonBadConfig(t *testing.T) {
	base := []string{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--gossip-bind", "127.0.0.1:0"}
	for name, args := range map[string][]string{
		"id not among peers": {"--raft-id", "2", "--raft-peers", "1=127.0.0.1:1", "--data", t.TempDir()},
		"no data":            {"--raft-id", "1", "--raft-peers", "1=127.0.0.1:1"},
		"peer without id":    {"--raft-id", "1", "--raft-peers", "127.0.0.1:1", "--data", t.TempDir()},
		"peer id twice":      {"--raft-id", "1", "--raft-peers", "1=127.0.0.1:1,1=127.0.0.1:2", "--data", t.TempDir()},
		"zero checkpoints":   {"--raft-id", "1", "--raft-peers", "1=127.0.0.1:1", "--data", t.TempDir(), "--checkpoint-interval", "0s"},
	} {
		if err := master.RunDaemon(context.Background(), append(slices.Clone(base), args...), io.Discard); !errors.Is(err, master.ErrInvalidConfig) {
			t.Errorf("%s: got %v, want ErrInvalidConfig", name, err)
		}
	}
}
