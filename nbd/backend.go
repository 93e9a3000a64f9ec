package nbd

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Backend is the storage an export reads and writes. Every method may be
// called concurrently. Ranges passed by the server always lie inside
// [0, Size()). *client.Volume satisfies Backend.
type Backend interface {
	// Size is the export's size in bytes; it must not change while served.
	Size() int64
	// ReadAt reads len(p) bytes at off, as io.ReaderAt does.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// WriteAt writes p at off, as io.WriterAt does.
	WriteAt(ctx context.Context, p []byte, off int64) (int, error)
	// Discard makes [off, off+length) read as zeros.
	Discard(ctx context.Context, off, length int64) error
	// Flush makes every write that returned before the call durable.
	Flush(ctx context.Context) error
}

// Describer is an optional capability of a Backend: the text a client asking
// for NBD_INFO_DESCRIPTION receives.
type Describer interface {
	Description() string
}

// Extent is a run of bytes in one allocation state.
type Extent struct {
	// Length is the run's size in bytes; it is positive.
	Length int64
	// Hole means the run holds no storage and reads as zeros; false means
	// data (which may still read as zeros).
	Hole bool
}

// Allocator is an optional capability of a Backend: which parts of the
// export hold data. It answers NBD_CMD_BLOCK_STATUS for the base:allocation
// context and lets READ replies carry holes instead of zeros. A Backend
// without it is reported as all data.
type Allocator interface {
	// Allocated describes [off, off+length) as consecutive extents starting
	// at off. The server clips extents past the range and treats a part
	// they leave out as data. It may be called concurrently with writes;
	// the answer then describes some state between them.
	Allocated(ctx context.Context, off, length int64) ([]Extent, error)
}

// ErrUnknownExport is returned by Exports.Open for a name it does not serve.
var ErrUnknownExport = errors.New("nbd: unknown export")

// Exports resolves export names to backends. The server calls it from many
// connections at once, and never closes a Backend it returned; an Exports
// that must know when a backend is no longer used implements Releaser.
type Exports interface {
	// Open returns the backend named name, or an error wrapping
	// ErrUnknownExport.
	Open(ctx context.Context, name string) (Backend, error)
	// List returns the names NBD_OPT_LIST reports.
	List(ctx context.Context) ([]string, error)
}

// Releaser is an optional capability of Exports. The server calls Release
// exactly once for every backend Open returned without error: as soon as
// NBD_OPT_INFO has been answered, or when the connection that selected the
// export with NBD_OPT_GO or NBD_OPT_EXPORT_NAME ends (after its last
// request finished). Basalt's gateway uses it to hold a volume's writer
// session exactly while a client is connected.
type Releaser interface {
	Release(name string, b Backend)
}

// MapExports serves a fixed set of backends by name. It must not be
// modified while a Server uses it.
type MapExports map[string]Backend

var _ Exports = MapExports(nil)

// Open returns the backend named name.
func (m MapExports) Open(_ context.Context, name string) (Backend, error) {
	if b, ok := m[name]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("opening export %q: %w", name, ErrUnknownExport)
}

// List returns the names of the exports in no particular order.
func (m MapExports) List(context.Context) ([]string, error) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	return names, nil
}

// memPageSize is the allocation unit of MemBackend.
const memPageSize = 4096

// MemBackend is a sparse in-memory Backend for tests: only pages written
// with data hold memory. It is safe for concurrent use; nothing is durable.
type MemBackend struct {
	size int64
	mu   struct {
		sync.RWMutex
		pages map[int64]*[memPageSize]byte
	}
}

var (
	_ Backend   = (*MemBackend)(nil)
	_ Allocator = (*MemBackend)(nil)
)

// NewMemBackend returns an all-zero MemBackend of size bytes.
func NewMemBackend(size int64) *MemBackend {
	m := &MemBackend{size: size}
	m.mu.pages = map[int64]*[memPageSize]byte{}
	return m
}

// Size returns the size given to NewMemBackend.
func (m *MemBackend) Size() int64 { return m.size }

// ReadAt copies the range at off into p; unwritten pages read as zeros.
func (m *MemBackend) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	if err := m.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	m.eachPageLocked(off, p, false, func(page *[memPageSize]byte, po int, b []byte) {
		if page == nil {
			clear(b)
			return
		}
		copy(b, page[po:])
	})
	return len(p), nil
}

// WriteAt copies p into the range at off.
func (m *MemBackend) WriteAt(_ context.Context, p []byte, off int64) (int, error) {
	if err := m.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.eachPageLocked(off, p, true, func(page *[memPageSize]byte, po int, b []byte) {
		copy(page[po:], b)
	})
	return len(p), nil
}

// Discard zeros the range, freeing the pages it covers whole.
func (m *MemBackend) Discard(_ context.Context, off, length int64) error {
	if err := m.checkRange(off, length); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for length > 0 {
		idx, po := off/memPageSize, off%memPageSize
		n := min(length, memPageSize-po)
		if page := m.mu.pages[idx]; page != nil && n == memPageSize {
			delete(m.mu.pages, idx)
		} else if page != nil {
			clear(page[po : po+n])
		}
		off, length = off+n, length-n
	}
	return nil
}

// Flush does nothing: memory has no durability to wait for.
func (m *MemBackend) Flush(context.Context) error { return nil }

// Allocated reports the pages never written (or discarded whole) as holes
// and the others as data.
func (m *MemBackend) Allocated(_ context.Context, off, length int64) ([]Extent, error) {
	if err := m.checkRange(off, length); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Extent
	for length > 0 {
		idx, po := off/memPageSize, off%memPageSize
		n := min(length, memPageSize-po)
		out = appendExtent(out, Extent{Length: n, Hole: m.mu.pages[idx] == nil})
		off, length = off+n, length-n
	}
	return out, nil
}

// Pages returns how many 4 KiB pages hold memory, for tests of sparseness.
func (m *MemBackend) Pages() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.mu.pages)
}

// ErrOutOfRange is returned by the backends in this package for a range
// outside [0, Size()).
var ErrOutOfRange = errors.New("nbd: range out of bounds")

func (m *MemBackend) checkRange(off, length int64) error {
	if off < 0 || length < 0 || off+length > m.size || off+length < off {
		return fmt.Errorf("range [%d, +%d) of %d bytes: %w", off, length, m.size, ErrOutOfRange)
	}
	return nil
}

// eachPageLocked calls fn for each page touched by p at off, with the
// offset inside the page and the part of p it covers. With alloc missing
// pages are allocated, without it fn gets nil for them.
// REQUIRES: m.mu held (exclusively when alloc).
func (m *MemBackend) eachPageLocked(off int64, p []byte, alloc bool, fn func(*[memPageSize]byte, int, []byte)) {
	for len(p) > 0 {
		idx, po := off/memPageSize, int(off%memPageSize)
		n := min(len(p), memPageSize-po)
		page := m.mu.pages[idx]
		if page == nil && alloc {
			page = new([memPageSize]byte)
			m.mu.pages[idx] = page
		}
		fn(page, po, p[:n])
		off, p = off+int64(n), p[n:]
	}
}
