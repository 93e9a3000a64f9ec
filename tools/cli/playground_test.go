package cli_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"basalt/tools/cli"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startPlayground runs `basalt playground` until the returned stop is
// called, and waits until it prints its next steps.
func startPlayground(t *testing.T, data, mdsAddr, nbdAddr string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, []string{"playground", "--data", data, "--mds-addr", mdsAddr,
			"--nbd-addr", nbdAddr, "--chunkserver-base-port", "-1"}, out, errOut)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "Try:") {
		select {
		case err := <-done:
			t.Fatalf("playground exited: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("playground did not come up\nstderr:\n%s", errOut)
		}
	}
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("playground returned %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("playground did not stop within 60s of Ctrl-C")
		}
	}
}

func qemuIO(t *testing.T, uri string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "raw", uri}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	if out, err := exec.Command("/usr/bin/qemu-io", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
}

// TestPlaygroundServesDemoOverNBDAndKeepsData starts the playground, writes
// the demo volume through qemu-io over NBD, stops it (Ctrl-C), starts it
// again on the same data and reads the data back.
func TestPlaygroundServesDemoOverNBDAndKeepsData(t *testing.T) {
	data := filepath.Join(t.TempDir(), "basalt-data")
	mdsAddr, nbdAddr := freeAddr(t), freeAddr(t)
	uri := "nbd://" + nbdAddr + "/demo"
	stop := startPlayground(t, data, mdsAddr, nbdAddr)
	out, err := exec.Command("/usr/bin/nbdinfo", uri).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10737418240") {
		t.Fatalf("nbdinfo %s: %v\n%s", uri, err, out)
	}
	qemuIO(t, uri, "write -P 0xab 0 1M", "write -P 0xcd 5G 64k", "read -P 0xab 0 1M")
	// Block status: the two written segments are data, the rest holes.
	out, err = exec.Command("/usr/bin/nbdinfo", "--map", uri).CombinedOutput()
	if err != nil {
		t.Fatalf("nbdinfo --map: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "hole,zero"); got != 2 {
		t.Fatalf("nbdinfo --map shows %d hole runs, want 2 (before and after the 5 GiB segment):\n%s", got, out)
	}
	stop()
	stop = startPlayground(t, data, mdsAddr, nbdAddr)
	defer stop()
	qemuIO(t, uri, "read -P 0xab 0 1M", "read -P 0xcd 5G 64k", "read -P 0 2G 1M")
}
