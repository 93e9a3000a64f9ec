package gateway_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"basalt/client"
	"basalt/client/clienttest"
	"basalt/nbd"
	"basalt/nbd/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exportsFor returns Exports over a fake cluster with one 1 MiB volume "v".
func exportsFor(t *testing.T) (*gateway.Exports, *clienttest.Cluster) {
	t.Helper()
	c := clienttest.Start(t, clienttest.Config{})
	if err := c.MDS.AddVolume("v", 1<<20); err != nil {
		t.Fatal(err)
	}
	opts := client.DefaultOptions()
	opts.MDSAddrs = []string{c.MDS.Addr()}
	ex, err := gateway.New(gateway.Config{Client: opts, Lister: staticLister{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	return ex, c
}

type staticLister []string

func (l staticLister) ListVolumes(context.Context) ([]string, error) { return l, nil }

// TestSharedWriterSessionHeldWhileReferenced: concurrent opens of one
// volume share one writer session; it is released by the last Release,
// and a later Open takes a new one.
func TestSharedWriterSessionHeldWhileReferenced(t *testing.T) {
	ex, c := exportsFor(t)
	ctx := context.Background()
	const n = 8
	backends := make([]nbd.Backend, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { backends[i], errs[i] = ex.Open(ctx, "v") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	first := c.MDS.Session("v")
	if first == 0 || len(ex.Opened()) != 1 {
		t.Fatalf("after %d opens: session %d, opened %v; want one session", n, first, ex.Opened())
	}
	if _, err := backends[0].WriteAt(ctx, []byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	for i := range n - 1 {
		ex.Release("v", backends[i])
	}
	if c.MDS.Session("v") != first {
		t.Fatal("session released while a connection still holds the volume")
	}
	ex.Release("v", backends[n-1])
	if s := c.MDS.Session("v"); s != 0 || len(ex.Opened()) != 0 {
		t.Fatalf("after the last release: session %d, opened %v; want none", s, ex.Opened())
	}
	b, err := ex.Open(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.MDS.Session("v"); s == 0 || s == first {
		t.Fatalf("reopen: session %d, want a new one (old %d)", s, first)
	}
	ex.Release("v", b)
}

// TestOpenErrors: an unknown volume is nbd.ErrUnknownExport; a failed
// open leaves nothing held, so the next open tries again.
func TestOpenErrors(t *testing.T) {
	ex, _ := exportsFor(t)
	ctx := context.Background()
	if _, err := ex.Open(ctx, "nosuch"); !errors.Is(err, nbd.ErrUnknownExport) {
		t.Fatalf("Open(nosuch) = %v, want ErrUnknownExport", err)
	}
	if _, err := ex.Open(ctx, "nosuch"); !errors.Is(err, nbd.ErrUnknownExport) || len(ex.Opened()) != 0 {
		t.Fatalf("second Open(nosuch) = %v, opened %v", err, ex.Opened())
	}
	names, err := ex.List(ctx)
	if err != nil || len(names) != 1 || names[0] != "v" {
		t.Fatalf("List = %v, %v", names, err)
	}
	if _, err := gateway.New(gateway.Config{}); !errors.Is(err, gateway.ErrNoMDS) {
		t.Fatalf("New without MDS = %v", err)
	}
}
