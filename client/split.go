package client

import "fmt"

// geometry is a volume's layout: its size and how it splits into segments
// and chunks.
type geometry struct {
	size      int64 // bytes
	segSize   int64 // bytes per segment, a multiple of chunkSize
	chunkSize int64 // bytes per chunk
}

// newGeometry checks the layout the MDS reported.
func newGeometry(size, segSize, chunkSize uint64) (geometry, error) {
	const maxInt64 = 1<<63 - 1
	if chunkSize == 0 || segSize == 0 || segSize%chunkSize != 0 || size > maxInt64 || segSize > maxInt64 {
		return geometry{}, fmt.Errorf("%w: volume layout from the MDS: size %d, segment size %d, chunk size %d",
			ErrInvalidArgument, size, segSize, chunkSize)
	}
	return geometry{size: int64(size), segSize: int64(segSize), chunkSize: int64(chunkSize)}, nil
}

// chunksPerSegment is the number of chunks in one segment.
func (g geometry) chunksPerSegment() int {
	return int(g.segSize / g.chunkSize)
}

// check reports ErrOutOfRange unless [off, off+n) lies within the volume.
func (g geometry) check(off, n int64) error {
	if off < 0 || n < 0 || off > g.size || n > g.size-off {
		return fmt.Errorf("%w: [%d, %d+%d) outside a volume of %d bytes", ErrOutOfRange, off, off, n, g.size)
	}
	return nil
}

// A part is the piece of one call that falls in one chunk.
type part struct {
	seg      int64 // segment index: offset / segment size
	chunk    int   // chunk index within the segment
	chunkOff int64 // offset within the chunk
	bufOff   int64 // offset within the call's range (and buffer)
	n        int64 // length
}

// split cuts [off, off+n) at chunk boundaries, in order. The range must
// have passed check.
func (g geometry) split(off, n int64) []part {
	parts := make([]part, 0, n/g.chunkSize+2)
	for done := int64(0); done < n; {
		pos := off + done
		inSeg := pos % g.segSize
		inChunk := inSeg % g.chunkSize
		l := min(g.chunkSize-inChunk, n-done)
		parts = append(parts, part{
			seg: pos / g.segSize, chunk: int(inSeg / g.chunkSize),
			chunkOff: inChunk, bufOff: done, n: l,
		})
		done += l
	}
	return parts
}
