package nbd_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"basalt/client"
	"basalt/nbd"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// *client.Volume is served without an adapter.
var _ nbd.Backend = (*client.Volume)(nil)

const memSize = 64 << 20

// testServer is a Server on a loopback or unix listener exporting a 64 MiB
// MemBackend named "mem".
type testServer struct {
	addr string // host:port, or the socket path for unix
	mem  *nbd.MemBackend
}

// uri is the export's NBD URI.
func (ts *testServer) uri() string { return "nbd://" + ts.addr + "/mem" }

// startServer serves "mem" on network ("tcp" or "unix") until the test
// ends, then stops the server and checks Serve's result.
func startServer(t *testing.T, network string) *testServer {
	t.Helper()
	mem := nbd.NewMemBackend(memSize)
	ts := startServerWith(t, network, mem)
	ts.mem = mem
	return ts
}

// startServerWith serves b as "mem" on network until the test ends.
func startServerWith(t *testing.T, network string, b nbd.Backend) *testServer {
	t.Helper()
	ts := &testServer{}
	srv, err := nbd.NewServer(nbd.Config{
		Exports: nbd.MapExports{"mem": b},
		Logger:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, network)
	ts.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

func listen(t *testing.T, network string) net.Listener {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "nbd.sock")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// toolPath returns /usr/bin/name, failing the test when it is missing.
func toolPath(t *testing.T, name, pkg string) string {
	t.Helper()
	path := "/usr/bin/" + name
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is required by this test and missing (apt-get install %s): %v", path, pkg, err)
	}
	return path
}

// runTool runs a tool with a deadline and returns its combined output.
func runTool(t *testing.T, path string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %q\n%s", path, args, out)
	return string(out), err
}

// mustRun runs a tool and fails the test if it fails.
func mustRun(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := runTool(t, path, args...)
	if err != nil {
		t.Fatalf("%s failed: %v\n%s", path, err, out)
	}
	return out
}
