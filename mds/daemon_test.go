package mds_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/internal/daemon"
	"basalt/mds"
	"basalt/mds/mdspb"
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
var servingRE = regexp.MustCompile(`msg="mds serving" grpc=(\S+) http=(\S+)`)

// waitServing waits for the serving log line and returns its addresses.
func waitServing(t *testing.T, logs *syncBuffer, done <-chan error) (grpcAddr, httpAddr string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if m := servingRE.FindStringSubmatch(logs.String()); m != nil {
			return m[1], m[2]
		}
		select {
		case err := <-done:
			t.Fatalf("daemon exited early: %v\n%s", err, logs)
		case <-deadline:
			t.Fatalf("daemon not serving after 10s:\n%s", logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func writeYAML(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mds.yaml")
	noErr(t, os.WriteFile(p, []byte(text), 0o644))
	return p
}

// TestRunDaemon runs the daemon in-process from a YAML file, checks
// /healthz and an RPC, and stops it by cancelling its context.
func TestRunDaemon(t *testing.T) {
	cfg := writeYAML(t, "listen: 127.0.0.1:0\nhttp: 127.0.0.1:0\ndata: "+t.TempDir()+
		"\nchunk_size: 65536\nsegment_size: 1048576\ncopysets_per_chunkserver: 5\nlog_level: debug\n")
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- mds.RunDaemon(runCtx, []string{"--config", cfg}, logs) }()
	grpcAddr, httpAddr := waitServing(t, logs, done)

	checkHealthz(t, httpAddr)
	checkRegister(t, grpcAddr, 65536)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunDaemon returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("RunDaemon did not return after cancel")
	}
}

func checkHealthz(t *testing.T, addr string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp := must(client.Get("http://" + addr + "/healthz"))(t)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("/healthz: %d %q", resp.StatusCode, body)
	}
}

// checkRegister registers a chunkserver over gRPC and checks the chunk
// size the daemon was configured with.
func checkRegister(t *testing.T, addr string, chunkSize uint64) {
	t.Helper()
	conn := must(grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())))(t)
	defer conn.Close()
	resp := must(mdspb.NewMDSClient(conn).RegisterChunkserver(ctx(t),
		&mdspb.RegisterChunkserverRequest{Address: "127.0.0.1:1", Zone: "z", Capacity: 1 << 30}))(t)
	if resp.GetId() != 1 || resp.GetChunkSize() != chunkSize {
		t.Fatalf("register: %+v, want id 1 and chunk size %d", resp, chunkSize)
	}
}

func TestRunDaemonBadConfig(t *testing.T) {
	for name, args := range map[string][]string{
		"unknown key":   {"--config", writeYAML(t, "listn: 127.0.0.1:0\n")},
		"unknown flag":  {"--nope"},
		"bad log level": {"--log-level", "loud"},
	} {
		err := mds.RunDaemon(context.Background(), args, io.Discard)
		if !errors.Is(err, daemon.ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
	err := mds.RunDaemon(context.Background(), []string{"--data", t.TempDir(), "--segment-size", "12345",
		"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"}, io.Discard)
	if !errors.Is(err, mds.ErrInvalidConfig) {
		t.Errorf("bad segment size: got %v, want ErrInvalidConfig", err)
	}
	if err := mds.RunDaemon(context.Background(), []string{"--help"}, io.Discard); err != nil {
		t.Errorf("--help: %v", err)
	}
}
