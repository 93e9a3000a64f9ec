package nbd_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"basalt/nbd"
)

// TestMemBackendSparse checks that MemBackend allocates only written pages,
// zeros partial discards and frees whole ones, and refuses bad ranges.
func TestMemBackendSparse(t *testing.T) {
	ctx := context.Background()
	m := nbd.NewMemBackend(1 << 20)
	if _, err := m.WriteAt(ctx, bytes.Repeat([]byte{1}, 3*4096), 4096+100); err != nil {
		t.Fatal(err)
	}
	if got := m.Pages(); got != 4 {
		t.Fatalf("pages after a write over 4 pages = %d", got)
	}
	if err := m.Discard(ctx, 4096+200, 2*4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4*4096)
	if _, err := m.ReadAt(ctx, got, 4096); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 4*4096)
	copy(want[100:200], bytes.Repeat([]byte{1}, 100))
	copy(want[200+2*4096:100+3*4096], bytes.Repeat([]byte{1}, 4096-100))
	if !bytes.Equal(got, want) || m.Pages() != 3 {
		t.Fatalf("after discard: pages %d, contents equal %v", m.Pages(), bytes.Equal(got, want))
	}
	if _, err := m.ReadAt(ctx, got, 1<<20-1); !errors.Is(err, nbd.ErrOutOfRange) {
		t.Fatalf("read past end: %v, want ErrOutOfRange", err)
	}
}

// TestFileBackendQemuIO serves a FileBackend and checks with qemu-io and
// the file's own contents.
func TestFileBackendQemuIO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	fb, err := nbd.OpenFileBackend(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fb.Close() }()
	ts := startServerWith(t, "tcp", fb)
	qemuIO := toolPath(t, "qemu-io", "qemu-utils")
	mustRun(t, qemuIO, "-f", "raw", ts.uri(), "-c", "write -f -P 0xcd 1000 70000", "-c", "read -P 0xcd 1000 70000",
		"-c", "discard 4096 4096", "-c", "read -P 0 4096 4096", "-c", "flush")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != 4<<20 || data[1000] != 0xcd || data[4096] != 0 || data[70999] != 0xcd || data[71000] != 0 {
		t.Fatalf("file contents wrong after qemu-io (len %d)", len(data))
	}
}

// TestShutdownClosesConnections checks that ending Serve's context closes
// idle connections and Serve returns nil after its goroutines exit.
func TestShutdownClosesConnections(t *testing.T) {
	srv, err := nbd.NewServer(nbd.Config{Exports: nbd.MapExports{"mem": nbd.NewMemBackend(1 << 20)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	inTransmission, inHandshake := dialRaw(t, ln.Addr().String()), dialRaw(t, ln.Addr().String())
	inTransmission.goExport("mem")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	inTransmission.expectClosed()
	inHandshake.expectClosed()
}

// TestConfigValidate checks that a Config without exports is refused.
func TestConfigValidate(t *testing.T) {
	if _, err := nbd.NewServer(nbd.Config{}); !errors.Is(err, nbd.ErrNoExports) {
		t.Fatalf("NewServer(Config{}) = %v, want ErrNoExports", err)
	}
}
