package nbd

import (
	"context"
	"fmt"
	"io"
	"os"
)

// FileBackend is a Backend over a local file or block device. Its size is
// the file's size when opened. It is safe for concurrent use; Flush is
// fsync. Contexts are not consulted: file I/O cannot be interrupted.
type FileBackend struct {
	f    *os.File
	size int64
}

var _ Backend = (*FileBackend)(nil)

// zeroBufSize is the size of the buffer Discard writes zeros from.
const zeroBufSize = 1 << 20

// OpenFileBackend opens the file at path for reading and writing.
func OpenFileBackend(path string) (*FileBackend, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening file backend: %w", err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("sizing file backend %s: %w", path, err)
	}
	return &FileBackend{f: f, size: size}, nil
}

// Size returns the file's size when it was opened.
func (b *FileBackend) Size() int64 { return b.size }

// ReadAt reads from the file.
func (b *FileBackend) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return b.f.ReadAt(p, off)
}

// WriteAt writes to the file.
func (b *FileBackend) WriteAt(_ context.Context, p []byte, off int64) (int, error) {
	return b.f.WriteAt(p, off)
}

// Discard writes zeros over the range (it does not punch holes).
func (b *FileBackend) Discard(_ context.Context, off, length int64) error {
	zeros := make([]byte, min(length, zeroBufSize))
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if _, err := b.f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("discarding at %d: %w", off, err)
		}
		off, length = off+n, length-n
	}
	return nil
}

// Flush syncs the file.
func (b *FileBackend) Flush(context.Context) error { return b.f.Sync() }

// Close closes the file.
func (b *FileBackend) Close() error { return b.f.Close() }
