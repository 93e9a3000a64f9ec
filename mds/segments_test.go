package mds_test

import (
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"basalt/mds"
	"basalt/mds/mdspb"
)

// TestLazySegmentAllocation: a segment reads as unallocated until a
// writer allocates it; then every reader sees the same map.
func TestLazySegmentAllocation(t *testing.T) {
	e := newEnv(t)
	e.pool()
	e.createVolume("v", 2*segmentSize+4096) // 3 segments, the last one partial
	seg := must(e.segment("v", 2, false, 0))(t)
	if seg.GetAllocated() || len(seg.GetChunks()) != 0 || seg.GetIndex() != 2 {
		t.Fatalf("unallocated segment: %+v", seg)
	}
	_, err := e.segment("v", 2, true, 0)
	wantErr(t, err, mds.ErrSessionInvalid, codes.FailedPrecondition)
	_, err = e.segment("v", 3, false, 0)
	wantErr(t, err, mds.ErrOutOfRange, codes.OutOfRange)

	s := e.openWriter("v", "w")
	first := must(e.segment("v", 2, true, s))(t)
	if !first.GetAllocated() || len(first.GetChunks()) != perSegment {
		t.Fatalf("allocated segment: %+v", first)
	}
	for _, allocate := range []bool{true, false} {
		if again := must(e.segment("v", 2, allocate, s))(t); !proto.Equal(again, first) {
			t.Fatalf("allocate=%v: got %v, want the first map %v", allocate, again, first)
		}
	}
	if v := must(e.c.StatVolume(ctx(t), &mdspb.StatVolumeRequest{Name: "v"}))(t); v.GetAllocatedSegments() != 1 {
		t.Fatalf("allocated segments: %d", v.GetAllocatedSegments())
	}
}

// TestChunkIDsUnique allocates segments of two volumes: every chunk ID is
// distinct and every copyset exists.
func TestChunkIDsUnique(t *testing.T) {
	e := newEnv(t)
	e.pool()
	copysets := e.copysetIDs()
	seen := map[uint64]bool{}
	for _, name := range []string{"a", "b"} {
		e.createVolume(name, 4*segmentSize)
		s := e.openWriter(name, "w")
		for i := range uint64(4) {
			for _, c := range must(e.segment(name, i, true, s))(t).GetChunks() {
				if seen[c.GetChunk()] || c.GetChunk() == 0 || !slices.Contains(copysets, c.GetCopyset()) {
					t.Fatalf("chunk %d (copyset %d) repeated, zero or in an unknown copyset", c.GetChunk(), c.GetCopyset())
				}
				seen[c.GetChunk()] = true
			}
		}
	}
	if len(seen) != 2*4*perSegment {
		t.Fatalf("%d chunks, want %d", len(seen), 2*4*perSegment)
	}
}

// TestChunksBalancedOverCopysets: chunks spread so that no copyset has
// more than one chunk more than another.
func TestChunksBalancedOverCopysets(t *testing.T) {
	e := newEnv(t)
	e.pool()
	e.createVolume("v", 7*segmentSize)
	s := e.openWriter("v", "w")
	count := map[uint64]int{}
	for _, id := range e.copysetIDs() {
		count[id] = 0
	}
	for i := range uint64(7) {
		for _, c := range must(e.segment("v", i, true, s))(t).GetChunks() {
			count[c.GetCopyset()]++
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range count {
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > 1 || len(count) != 10 {
		t.Fatalf("chunks per copyset %v: spread %d..%d", count, lo, hi)
	}
}

// TestConcurrentAllocationSameMap: writers racing to allocate one segment
// all get the same map.
func TestConcurrentAllocationSameMap(t *testing.T) {
	e := newEnv(t)
	e.pool()
	e.createVolume("v", segmentSize)
	s := e.openWriter("v", "w")
	const n = 8
	segs := make([]*mdspb.Segment, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { segs[i], errs[i] = e.segment("v", 0, true, s) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !proto.Equal(segs[i], segs[0]) {
			t.Fatalf("caller %d: %v, %v; want %v", i, segs[i], errs[i], segs[0])
		}
	}
}

// TestAllocateWithoutPool: before the pool exists, reads work and
// allocation fails with ErrNoPool (Unavailable).
func TestAllocateWithoutPool(t *testing.T) {
	e := newEnv(t)
	e.register("a")
	e.createVolume("v", segmentSize)
	s := e.openWriter("v", "w")
	if seg := must(e.segment("v", 0, false, 0))(t); seg.GetAllocated() {
		t.Fatalf("got %+v", seg)
	}
	_, err := e.segment("v", 0, true, s)
	wantErr(t, err, mds.ErrNoPool, codes.Unavailable)
}
