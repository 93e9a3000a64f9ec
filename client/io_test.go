package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"basalt/client"
	"basalt/client/clienttest"
)

// TestSplitReadBack writes ranges that start, end and span chunk and segment
// boundaries, aligned and not, and checks every byte of the volume against
// a model after each write.
func TestSplitReadBack(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	v := writer(t, c)
	model := make([]byte, volSize)
	cases := []struct {
		name   string
		off, n int64
	}{
		{"one aligned chunk", chunk, chunk},
		{"inside a chunk", 100, 200},
		{"across a chunk boundary", chunk - 10, 20},
		{"across a segment boundary", segment - 3, 7},
		{"whole segment aligned", 2 * segment, segment},
		{"unaligned, many chunks and segments", segment/2 + 1, 2*segment + 123},
		{"last byte", volSize - 1, 1},
		{"whole volume", 0, volSize},
		{"tail across the last segment", volSize - segment - 5, segment + 5},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := randBytes(uint64(i+1), int(tc.n))
			mustWrite(t, v, data, tc.off)
			copy(model[tc.off:], data)
			checkRead(t, v, tc.off, data)
			checkRead(t, v, 0, model)
		})
	}
	// A fresh reader sees the same bytes.
	r := openVolume(t, options(c, false))
	checkRead(t, r, 0, model)
}

// TestUnallocatedReadsZeros checks that never-written segments read as
// zeros without any chunkserver call, next to written ones.
func TestUnallocatedReadsZeros(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	v := writer(t, c)
	checkRead(t, v, 0, make([]byte, volSize))
	if n := c.DataCalls(); n != 0 {
		t.Fatalf("reading a never-written volume made %d chunkserver calls", n)
	}
	data := randBytes(1, 10)
	mustWrite(t, v, data, segment+5)
	before := c.DataCalls()
	checkRead(t, v, 2*segment, make([]byte, 2*segment)) // segments 2 and 3: never written
	if n := c.DataCalls() - before; n != 0 {
		t.Fatalf("reading never-written segments made %d chunkserver calls", n)
	}
	want := make([]byte, segment)
	copy(want[5:], data)
	checkRead(t, v, segment, want) // written segment: its unwritten bytes are zeros too
}

// TestOutOfRangeAndEmpty checks that bad ranges fail with ErrOutOfRange
// before any RPC, and that empty calls succeed without one.
func TestOutOfRangeAndEmpty(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	v := writer(t, c)
	ctx := context.Background()
	mds, data := c.MDS.SegmentCalls(), c.DataCalls()
	for _, r := range []struct{ off, n int64 }{{-1, 1}, {volSize, 1}, {volSize - 1, 2}, {volSize + 1, 0}, {-5, 0}} {
		if _, err := v.ReadAt(ctx, make([]byte, r.n), r.off); !errors.Is(err, client.ErrOutOfRange) {
			t.Errorf("ReadAt(%d bytes at %d) = %v, want ErrOutOfRange", r.n, r.off, err)
		}
		if _, err := v.WriteAt(ctx, make([]byte, r.n), r.off); !errors.Is(err, client.ErrOutOfRange) {
			t.Errorf("WriteAt(%d bytes at %d) = %v, want ErrOutOfRange", r.n, r.off, err)
		}
		if err := v.Discard(ctx, r.off, r.n); !errors.Is(err, client.ErrOutOfRange) {
			t.Errorf("Discard(%d bytes at %d) = %v, want ErrOutOfRange", r.n, r.off, err)
		}
	}
	for _, off := range []int64{0, 7, volSize} {
		if n, err := v.ReadAt(ctx, nil, off); n != 0 || err != nil {
			t.Errorf("empty ReadAt at %d = %d, %v", off, n, err)
		}
		if n, err := v.WriteAt(ctx, nil, off); n != 0 || err != nil {
			t.Errorf("empty WriteAt at %d = %d, %v", off, n, err)
		}
		if err := v.Discard(ctx, off, 0); err != nil {
			t.Errorf("empty Discard at %d = %v", off, err)
		}
	}
	if c.MDS.SegmentCalls() != mds || c.DataCalls() != data {
		t.Fatalf("bad and empty calls made RPCs: %d segment lookups, %d chunkserver calls",
			c.MDS.SegmentCalls()-mds, c.DataCalls()-data)
	}
}

// TestDiscard checks that a discarded range (unaligned, across chunks and
// segments, partly never written) reads as zeros and the rest is intact.
func TestDiscard(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	v := writer(t, c)
	model := randBytes(3, 2*segment)
	mustWrite(t, v, model, 0)
	model = append(model, make([]byte, volSize-2*segment)...)
	off, n := int64(chunk+17), int64(2*segment+chunk) // reaches into never-written segment 2
	if err := v.Discard(context.Background(), off, n); err != nil {
		t.Fatalf("Discard: %v", err)
	}
	clear(model[off : off+n])
	checkRead(t, v, 0, model)
	if c.MDS.Segment("vol", 2) != nil {
		t.Fatalf("Discard allocated a never-written segment")
	}
}

// TestConcurrentDisjoint runs many goroutines that each write and read back
// their own unaligned range, under the race detector.
func TestConcurrentDisjoint(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 6})
	v := writer(t, c)
	const workers = 32
	stride := int64(volSize / workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			off, n := int64(w)*stride+int64(w%7), int(stride)-13
			for round := range 3 {
				data := randBytes(uint64(w*10+round), n)
				if _, err := v.WriteAt(context.Background(), data, off); err != nil {
					errs <- fmt.Errorf("worker %d: WriteAt: %w", w, err)
					return
				}
				got := make([]byte, n)
				if _, err := v.ReadAt(context.Background(), got, off); err != nil {
					errs <- fmt.Errorf("worker %d round %d: ReadAt: %w", w, round, err)
					return
				}
				if !bytes.Equal(got, data) {
					errs <- fmt.Errorf("worker %d round %d: read back differs at byte %d", w, round, firstDiff(got, data))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSharedLookups checks that concurrent readers of one segment share one
// GetSegment call, that allocated segments are not looked up again, and
// that a "not allocated" answer is trusted by reads only briefly.
func TestSharedLookups(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	o := options(c, false)
	o.NegativeCacheTTL = 50 * time.Millisecond
	r := openVolume(t, o)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { _, _ = r.ReadAt(context.Background(), make([]byte, 10), 5) })
	}
	wg.Wait()
	if n := c.MDS.SegmentCalls(); n != 1 {
		t.Fatalf("20 concurrent reads of one segment made %d GetSegment calls, want 1", n)
	}
	w := writer(t, c)
	data := randBytes(9, 10)
	mustWrite(t, w, data, 5)
	eventually(t, 2*time.Second, "the reader to see the new segment", func() bool {
		return bytes.Equal(mustRead(t, r, 5, 10), data)
	})
	before := c.MDS.SegmentCalls()
	for range 5 {
		checkRead(t, r, 5, data)
	}
	if n := c.MDS.SegmentCalls() - before; n != 0 {
		t.Fatalf("reads of a known allocated segment made %d GetSegment calls", n)
	}
}

// TestReaderAtAdapter reads the whole volume through io.NewSectionReader,
// which relies on io.EOF at the end.
func TestReaderAtAdapter(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	v := writer(t, c)
	data := randBytes(4, volSize)
	if _, err := v.WriterAt(context.Background()).WriteAt(data, 0); err != nil {
		t.Fatalf("WriterAt: %v", err)
	}
	got, err := io.ReadAll(io.NewSectionReader(v.ReaderAt(context.Background()), 0, volSize+100))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAll: %d bytes, %v; equal %v", len(got), err, bytes.Equal(got, data))
	}
}
