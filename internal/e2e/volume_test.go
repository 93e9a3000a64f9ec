package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"basalt/client"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createVolume creates a volume with the CLI and checks its JSON answer.
func (c *cluster) createVolume(name, size string) {
	c.t.Helper()
	out, err := c.cli("volume", "create", name, "--size", size, "--mds", c.mdsRPC, "-o", "json")
	if err != nil {
		c.t.Fatal(err)
	}
	var v struct {
		Name string `json:"name"`
		Size string `json:"size"` // protojson renders uint64 as a string
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Name != name {
		c.t.Fatalf("volume create printed %q (%v)", out, err)
	}
}

func pattern(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func readBack(t *testing.T, v *client.Volume, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := v.ReadAt(ctxT(t, 30*time.Second), b, off); err != nil {
		t.Fatalf("reading [%d,+%d): %v", off, n, err)
	}
	return b
}

// TestVolumeReadWriteAcrossBoundaries creates a volume with the CLI and
// writes aligned and unaligned patterns across chunk and segment
// boundaries through the client library, against real daemons.
func TestVolumeReadWriteAcrossBoundaries(t *testing.T) {
	c := startCluster(t)
	const size = 64 << 20
	c.createVolume("v1", "64MiB")
	v := c.open(t, "v1", true)
	rng := rand.New(rand.NewPCG(7, 7))
	writes := []struct {
		off int64
		n   int
	}{
		{0, 4096},                              // aligned, first block
		{chunkSize - 5000, 10000},              // unaligned, across a chunk boundary
		{segmentSize - (1 << 20) - 7, 3 << 20}, // across chunks and a segment boundary
		{size - 100, 100},                      // the very end of the volume
	}
	want := map[int64][]byte{}
	for _, w := range writes {
		data := pattern(rng, w.n)
		if _, err := v.WriteAt(ctxT(t, 30*time.Second), data, w.off); err != nil {
			t.Fatalf("writing [%d,+%d): %v", w.off, w.n, err)
		}
		want[w.off] = data
	}
	for off, data := range want {
		if got := readBack(t, v, off, len(data)); !bytes.Equal(got, data) {
			t.Fatalf("read back of [%d,+%d) differs", off, len(data))
		}
	}
	if got := readBack(t, v, 40<<20, 1<<20); !bytes.Equal(got, make([]byte, 1<<20)) {
		t.Fatal("a never-written range does not read as zeros")
	}
	if _, err := v.WriteAt(ctxT(t, 10*time.Second), make([]byte, 20), size-10); !errors.Is(err, client.ErrOutOfRange) {
		t.Fatalf("write past the end: got %v, want ErrOutOfRange", err)
	}
	checkSecondWriter(t, c, "v1", want)
	checkCLI(t, c)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	checkDeleteFreesSpace(t, c, "v1")
}

// checkSecondWriter: a second writer is refused with a clear error; a
// reader is allowed and sees the data.
func checkSecondWriter(t *testing.T, c *cluster, name string, want map[int64][]byte) {
	t.Helper()
	if _, err := c.tryOpen(name, true); !errors.Is(err, client.ErrWriterExists) {
		t.Fatalf("second writer: got %v, want ErrWriterExists", err)
	}
	r := c.open(t, name, false)
	defer r.Close()
	for off, data := range want {
		if got := readBack(t, r, off, len(data)); !bytes.Equal(got, data) {
			t.Fatalf("reader sees different data at %d", off)
		}
	}
	if _, err := r.WriteAt(ctxT(t, 10*time.Second), []byte("x"), 0); !errors.Is(err, client.ErrReadOnly) {
		t.Fatalf("write through a reader: got %v, want ErrReadOnly", err)
	}
}

func checkCLI(t *testing.T, c *cluster) {
	t.Helper()
	out, err := c.cli("cluster", "status", "--mds", c.mdsRPC, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Chunkservers []struct {
			Alive bool `json:"alive"`
		} `json:"chunkservers"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Chunkservers) != 3 {
		t.Fatalf("cluster status -o json: %q (%v)", out, err)
	}
	for _, cs := range st.Chunkservers {
		if !cs.Alive {
			t.Fatalf("a chunkserver is reported down: %s", out)
		}
	}
	out, err = c.cli("volume", "list", "--mds", c.mdsRPC)
	if err != nil || !strings.Contains(out, "v1") {
		t.Fatalf("volume list: %q (%v)", out, err)
	}
	if stderr, err := c.cliStderr("volume", "info", "nope", "--mds", c.mdsRPC); err == nil || !strings.Contains(stderr, "not found") {
		t.Fatalf("volume info of a missing volume: %v, stderr %q", err, stderr)
	}
}

// checkDeleteFreesSpace deletes the volume and waits until the
// chunkservers report their chunks gone.
func checkDeleteFreesSpace(t *testing.T, c *cluster, name string) {
	t.Helper()
	if used := c.usedBytes(t); used == 0 {
		t.Fatal("chunkservers report no used space before the delete")
	}
	if _, err := c.cli("volume", "delete", name, "--mds", c.mdsRPC); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "space freed", func() error {
		if used := c.usedBytes(t); used != 0 {
			return fmt.Errorf("%d bytes still used", used)
		}
		return nil
	})
}

func (c *cluster) usedBytes(t *testing.T) uint64 {
	st, err := c.status()
	if err != nil {
		t.Fatal(err)
	}
	var used uint64
	for _, cs := range st.GetChunkservers() {
		used += cs.GetUsed()
	}
	return used
}

// writer writes 64 KiB blocks in a loop and remembers what was
// acknowledged.
type writer struct {
	v     *client.Volume
	size  int64
	mu    sync.Mutex
	acked map[int64][]byte
	fails []error
	n     int
}

// run writes blocks of stripe i of n (block numbers ≡ i mod n), so
// concurrent writers never race on the same block and the last
// acknowledged write of each block is what must read back.
func (w *writer) run(ctx context.Context, i, n int64) {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	const block = 64 << 10
	for ctx.Err() == nil {
		off := (rng.Int64N(w.size/block/n)*n + i) * block
		data := pattern(rng, block)
		_, err := w.v.WriteAt(context.Background(), data, off)
		w.mu.Lock()
		if err != nil {
			w.fails = append(w.fails, err)
		} else {
			w.acked[off] = data
			w.n++
		}
		w.mu.Unlock()
	}
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

func (w *writer) verify(t *testing.T, v *client.Volume) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for off, data := range w.acked {
		if got := readBack(t, v, off, len(data)); !bytes.Equal(got, data) {
			t.Fatalf("acknowledged write at %d lost or changed", off)
		}
	}
}

// TestKill9DuringWritesLosesNothing kills chunkservers with SIGKILL during
// a sustained write loop, restarts them, then restarts the whole cluster;
// every acknowledged write must read back.
func TestKill9DuringWritesLosesNothing(t *testing.T) {
	c := startCluster(t)
	c.createVolume("busy", "32MiB")
	v := c.open(t, "busy", true)
	w := &writer{v: v, size: 32 << 20, acked: map[int64][]byte{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range int64(4) {
		wg.Go(func() { w.run(ctx, i, 4) })
	}
	progress := func(what string) {
		n := w.count()
		waitFor(t, 60*time.Second, "writes progressing "+what, func() error {
			if w.count() < n+50 {
				return fmt.Errorf("%d writes acknowledged", w.count())
			}
			return nil
		})
	}
	progress("at start")
	for _, i := range []int{0, 1} {
		c.cs[i].kill9()
		progress(fmt.Sprintf("with chunkserver %d killed", i+1))
		c.cs[i].start()
		c.waitHealthy()
		progress(fmt.Sprintf("after chunkserver %d restarted", i+1))
	}
	cancel()
	wg.Wait()
	if len(w.fails) > 0 {
		t.Fatalf("%d writes failed (first: %v); the client should have retried through the failures", len(w.fails), w.fails[0])
	}
	t.Logf("%d writes acknowledged", w.count())
	w.verify(t, v)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	// Whole-cluster restart: everything acknowledged is still there.
	for _, p := range c.cs {
		p.stop()
	}
	c.mds.stop()
	c.mds.start()
	for _, p := range c.cs {
		p.start()
	}
	c.waitHealthy()
	r := c.open(t, "busy", false)
	defer r.Close()
	w.verify(t, r)
}
