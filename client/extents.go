package client

import (
	"context"
	"time"
)

// Extent is a run of a volume's bytes that is either allocated (its
// segment has been written at least once) or not (it reads as zeros
// without touching a chunkserver).
type Extent struct {
	Length    int64
	Allocated bool
}

// Extents describes the allocation of [off, off+length), segment by
// segment, merging neighbours with the same state. It is what an NBD
// server reports as block status, so that copies of a volume stay sparse.
// Allocation is per segment: an allocated segment may still hold zeros.
func (v *Volume) Extents(ctx context.Context, off, length int64) ([]Extent, error) {
	end, err := v.calls.begin(false)
	if err != nil {
		return nil, err
	}
	defer end()
	if err := v.admit(false, off, length); err != nil {
		return nil, err
	}
	var out []Extent
	s := newRetryState(time.Now().Add(v.opts.RetryDeadline))
	for length > 0 {
		index := off / v.geo.segSize
		n := min(length, (index+1)*v.geo.segSize-off)
		seg, err := v.segment(ctx, s, index, segRead)
		if err != nil {
			return nil, err
		}
		out = appendExtent(out, Extent{Length: n, Allocated: seg.allocated})
		off, length = off+n, length-n
	}
	return out, nil
}

func appendExtent(out []Extent, e Extent) []Extent {
	if k := len(out) - 1; k >= 0 && out[k].Allocated == e.Allocated {
		out[k].Length += e.Length
		return out
	}
	return append(out, e)
}
