package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"basalt/mds/mdspb"
)

// segMode is why a part needs a segment's map.
type segMode int

const (
	// segRead may use a recent "not allocated" answer.
	segRead segMode = iota
	// segDiscard asks the MDS unless the segment is known allocated, and
	// never allocates.
	segDiscard
	// segWrite allocates the segment if needed.
	segWrite
)

// A chunkRef is where one chunk of a segment lives.
type chunkRef struct {
	chunk   uint64
	copyset uint64
}

// A segment is one segment's map. Allocated segments never change, so they
// are cached for the life of the Volume.
type segment struct {
	allocated bool
	chunks    []chunkRef // chunksPerSegment entries when allocated
}

// unallocated is the map of every segment that was never written.
var unallocated = &segment{}

// segKey identifies one shared GetSegment call.
type segKey struct {
	index    int64
	allocate bool
}

// segmentCache caches segment maps: allocated ones forever, "not
// allocated" ones for reads only and only until their expiry.
type segmentCache struct {
	negativeTTL time.Duration
	flights     flights[segKey, *segment]
	mu          struct {
		sync.Mutex
		known  map[int64]*segment  // allocated segments
		absent map[int64]time.Time // segment -> when its "not allocated" expires
	}
}

func newSegmentCache(negativeTTL time.Duration) *segmentCache {
	c := &segmentCache{negativeTTL: negativeTTL}
	c.mu.known = map[int64]*segment{}
	c.mu.absent = map[int64]time.Time{}
	return c
}

// cached returns what the cache may answer for mode, or nil.
func (c *segmentCache) cached(index int64, mode segMode) *segment {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.mu.known[index]; ok {
		return s
	}
	if exp, ok := c.mu.absent[index]; ok && mode == segRead && time.Now().Before(exp) {
		return unallocated
	}
	return nil
}

// store records an answer of the MDS for a call made in mode.
func (c *segmentCache) store(index int64, s *segment, mode segMode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case s.allocated:
		c.mu.known[index] = s
		delete(c.mu.absent, index)
	case mode == segRead:
		c.mu.absent[index] = time.Now().Add(c.negativeTTL)
	}
}

// segment returns the map of segment index, from the cache or from the MDS
// (one shared call per segment and mode), retrying within s's deadline.
func (v *Volume) segment(ctx context.Context, s *retryState, index int64, mode segMode) (*segment, error) {
	if seg := v.segs.cached(index, mode); seg != nil {
		return seg, nil
	}
	key := segKey{index: index, allocate: mode == segWrite}
	return v.segs.flights.do(ctx, key, func(ctx context.Context) (*segment, error) {
		seg, err := v.fetchSegment(ctx, s, index, mode)
		if err == nil {
			v.segs.store(index, seg, mode)
		}
		return seg, err
	})
}

// fetchSegment asks the MDS for a segment's map.
func (v *Volume) fetchSegment(ctx context.Context, s *retryState, index int64, mode segMode) (*segment, error) {
	req := &mdspb.GetSegmentRequest{Volume: v.name, Index: uint64(index)}
	if mode == segWrite {
		req.Allocate, req.Session = true, v.session
	}
	var resp *mdspb.Segment
	err := v.retryMDS(ctx, s, func(ctx context.Context, c mdspb.MDSClient) (err error) {
		resp, err = c.GetSegment(ctx, req)
		return err
	}, sessionLost())
	if err != nil {
		return nil, fmt.Errorf("getting segment %d: %w", index, err)
	}
	return v.parseSegment(index, resp)
}

// parseSegment checks the MDS's answer.
func (v *Volume) parseSegment(index int64, resp *mdspb.Segment) (*segment, error) {
	if !resp.GetAllocated() {
		return unallocated, nil
	}
	if len(resp.GetChunks()) != v.geo.chunksPerSegment() {
		return nil, fmt.Errorf("client: MDS returned %d chunks for segment %d, want %d",
			len(resp.GetChunks()), index, v.geo.chunksPerSegment())
	}
	seg := &segment{allocated: true, chunks: make([]chunkRef, len(resp.GetChunks()))}
	for i, c := range resp.GetChunks() {
		seg.chunks[i] = chunkRef{chunk: c.GetChunk(), copyset: c.GetCopyset()}
	}
	return seg, nil
}
