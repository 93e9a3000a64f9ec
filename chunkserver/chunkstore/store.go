package chunkstore

import (
	"errors"
	"fmt"
)

// Store is what the copyset state machine needs from chunk storage. Offsets
// and lengths are within one chunk: [0, ChunkSize()).
type Store interface {
	// ChunkSize returns the size of every chunk in bytes.
	ChunkSize() int64
	// WriteAt writes p at off in chunk, creating the chunk if needed.
	WriteAt(chunk uint64, off int64, p []byte) error
	// ReadAt fills p from off in chunk; never-written bytes read as zeros.
	ReadAt(chunk uint64, off int64, p []byte) error
	// Discard zeroes length bytes at off in chunk.
	Discard(chunk uint64, off, length int64) error
	// Delete removes chunk; deleting a missing chunk is not an error.
	Delete(chunk uint64) error
	// Exists reports whether chunk has been written and not deleted.
	Exists(chunk uint64) bool
	// Sync makes every operation completed before the call durable.
	Sync() error
	// Close releases resources; the store is unusable afterwards.
	Close() error
}

// Errors returned by stores. Test with errors.Is.
var (
	ErrOutOfRange    = errors.New("chunkstore: range outside the chunk")
	ErrClosed        = errors.New("chunkstore: store closed")
	ErrInvalidConfig = errors.New("chunkstore: invalid config")
)

// checkRange validates [off, off+n) against a chunk of size size.
func checkRange(size, off, n int64) error {
	if off < 0 || n < 0 || off > size || n > size-off {
		return fmt.Errorf("%w: offset %d length %d, chunk size %d", ErrOutOfRange, off, n, size)
	}
	return nil
}
