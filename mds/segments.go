package mds

import (
	"container/heap"
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"basalt/mds/mdspb"
)

// GetSegment returns the chunk map of segment req.Index of a volume (the
// bytes [Index*SegmentSize, (Index+1)*SegmentSize) of it).
//
// An allocated segment is returned as is, to anyone. An unallocated one
// is returned with Allocated false (it reads as zeros) unless req.Allocate
// is set: then req.Session must be the volume's live writer session
// (ErrSessionInvalid otherwise) and the segment is allocated: each of its
// SegmentSize/ChunkSize chunks gets a new cluster-unique chunk ID and the
// copyset with the fewest chunks (ties broken at random), all persisted in
// one batch. Allocation is serialized, so concurrent callers get the same
// map. It fails with ErrOutOfRange for an index at or past the end of the
// volume and with ErrNoPool before the pool exists.
func (s *Server) GetSegment(ctx context.Context, req *mdspb.GetSegmentRequest) (*mdspb.Segment, error) {
	return call(ctx, s, "GetSegment", func() (*mdspb.Segment, error) { return s.getSegment(req) })
}

func (s *Server) getSegment(req *mdspb.GetSegmentRequest) (*mdspb.Segment, error) {
	return withVolume(s, req.GetVolume(), func(v *volume) (*mdspb.Segment, error) {
		if req.GetIndex() >= s.segmentCount(v) {
			return nil, fmt.Errorf("%w: segment %d of %q, which has %d", ErrOutOfRange, req.GetIndex(), req.GetVolume(), s.segmentCount(v))
		}
		seg, err := s.readSegment(v, req.GetIndex())
		if err != nil || seg.GetAllocated() || !req.GetAllocate() {
			return seg, err
		}
		if err := s.checkSessionLocked(v, req.GetSession()); err != nil {
			return nil, err
		}
		return s.allocateLocked(v, req.GetIndex())
	})
}

// segmentCount returns how many segments cover v (the last may be partly
// past the end of the volume).
func (s *Server) segmentCount(v *volume) uint64 {
	return (v.rec.GetSize() + s.cfg.SegmentSize - 1) / s.cfg.SegmentSize
}

// readSegment reads a segment map from the store.
func (s *Server) readSegment(v *volume, index uint64) (*mdspb.Segment, error) {
	rec := &mdspb.SegmentRecord{}
	found, err := s.get(idKey(prefixSegment, v.rec.GetId(), index), rec)
	if err != nil {
		return nil, fmt.Errorf("reading segment %d of %q: %w", index, v.rec.GetName(), err)
	}
	return &mdspb.Segment{Index: index, Allocated: found, Chunks: rec.GetChunks()}, nil
}

// allocateLocked allocates segment index of v.
// REQUIRES: s.mu held
func (s *Server) allocateLocked(v *volume, index uint64) (*mdspb.Segment, error) {
	if s.mu.pool == nil {
		return nil, s.noPoolLocked()
	}
	meta := proto.CloneOf(s.mu.meta)
	rec := &mdspb.SegmentRecord{}
	for _, cp := range s.pickCopysetsLocked(int(s.cfg.SegmentSize / s.cfg.ChunkSize)) {
		meta.LastChunk++
		rec.Chunks = append(rec.Chunks, &mdspb.SegmentChunk{Chunk: meta.GetLastChunk(), Copyset: cp})
	}
	var b Batch
	b.Set(metaKey, encode(meta))
	b.Set(idKey(prefixSegment, v.rec.GetId(), index), encode(rec))
	if err := s.kv.Apply(&b); err != nil {
		return nil, fmt.Errorf("allocating segment %d of %q: %w", index, v.rec.GetName(), err)
	}
	s.mu.meta = meta
	v.segments++
	s.countChunksLocked(rec.GetChunks(), 1)
	s.log.Debug("segment allocated", "volume", v.rec.GetName(), "segment", index)
	return &mdspb.Segment{Index: index, Allocated: true, Chunks: rec.GetChunks()}, nil
}

// noPoolLocked explains why there is no pool yet.
// REQUIRES: s.mu held
func (s *Server) noPoolLocked() error {
	alive, zones := 0, make(map[string]bool)
	for _, cs := range s.mu.servers {
		if s.aliveLocked(cs) {
			alive++
			zones[cs.rec.GetZone()] = true
		}
	}
	return fmt.Errorf("%w: %d alive chunkservers in %d zones have registered; the pool needs %d in %d zones",
		ErrNoPool, alive, len(zones), s.cfg.MinChunkservers, s.cfg.Replicas)
}

// pickCopysetsLocked picks a copyset for each of n new chunks: each time
// the one with the fewest chunks, counting those picked before, ties
// broken at random. It does not change the counts.
// REQUIRES: s.mu held, a pool
func (s *Server) pickCopysetsLocked(n int) []uint64 {
	h := make(loadHeap, 0, len(s.mu.copysetIDs))
	for _, id := range s.mu.copysetIDs {
		h = append(h, load{chunks: s.mu.copysets[id].chunks, tie: s.mu.rng.Uint64(), id: id})
	}
	heap.Init(&h)
	out := make([]uint64, n)
	for i := range out {
		out[i] = h[0].id
		h[0].chunks++
		h[0].tie = s.mu.rng.Uint64()
		heap.Fix(&h, 0)
	}
	return out
}

// load is a copyset's chunk count, with a random tie breaker.
type load struct {
	chunks int
	tie    uint64
	id     uint64
}

// loadHeap is a min-heap of loads (container/heap).
type loadHeap []load

func (h loadHeap) Len() int      { return len(h) }
func (h loadHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h loadHeap) Less(i, j int) bool {
	if h[i].chunks != h[j].chunks {
		return h[i].chunks < h[j].chunks
	}
	return h[i].tie < h[j].tie
}
func (h *loadHeap) Push(x any) { *h = append(*h, x.(load)) }
func (h *loadHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
