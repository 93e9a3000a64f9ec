package client_test

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"

	"basalt/client"
	"basalt/client/clienttest"
	"basalt/internal/testwait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Default layout of the test clusters: 4 KiB chunks, 4 chunks per segment,
// volumes of 4 segments.
const (
	chunk   = 4096
	segment = 4 * chunk
	volSize = 4 * segment
)

// startCluster starts a fake cluster with one volume "vol" of volSize.
func startCluster(t *testing.T, cfg clienttest.Config) *clienttest.Cluster {
	t.Helper()
	c := clienttest.Start(t, cfg)
	if err := c.MDS.AddVolume("vol", volSize); err != nil {
		t.Fatalf("creating volume: %v", err)
	}
	return c
}

// options returns Options for the cluster with a short retry deadline.
func options(c *clienttest.Cluster, writer bool) client.Options {
	o := client.DefaultOptions()
	o.MDSAddrs = []string{c.MDS.Addr()}
	o.Writer = writer
	o.ClientName = "test"
	o.RetryDeadline = 5 * time.Second
	o.RPCTimeout = time.Second
	o.Logger = slog.New(slog.DiscardHandler)
	return o
}

// openVolume opens "vol" and closes it when the test ends.
func openVolume(t *testing.T, o client.Options) *client.Volume {
	t.Helper()
	v, err := client.Open(context.Background(), o, "vol")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// writer opens "vol" as its writer with the default test options.
func writer(t *testing.T, c *clienttest.Cluster) *client.Volume {
	t.Helper()
	return openVolume(t, options(c, true))
}

// randBytes returns n pseudo-random bytes from seed.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustWrite(t *testing.T, v *client.Volume, p []byte, off int64) {
	t.Helper()
	if n, err := v.WriteAt(context.Background(), p, off); err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, n, err)
	}
}

func mustRead(t *testing.T, v *client.Volume, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if got, err := v.ReadAt(context.Background(), p, off); err != nil || got != n {
		t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
	}
	return p
}

// checkRead reads [off, off+len(want)) and compares it with want.
func checkRead(t *testing.T, v *client.Volume, off int64, want []byte) {
	t.Helper()
	if got := mustRead(t, v, off, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes at %d: first difference at byte %d", len(want), off, firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, d, what, cond)
}
