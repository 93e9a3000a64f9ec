package chunkstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/vfsutil"
)

var errPoolEmpty = errors.New("chunkstore: pool empty")

// pool is the set of preallocated, zero-filled, synced chunk-sized files
// under Dir/pool, ready to become chunks by rename (Curve's chunkfilepool):
// a chunk's first write then costs no file creation or block allocation.
type pool struct {
	fs     vfs.FS
	dir    string
	size   int64
	target int

	fillMu sync.Mutex // one fill at a time
	mu     struct {
		sync.Mutex
		ready []string // file names in dir
		next  uint64   // next file number
	}
}

func openPool(cfg Config) (*pool, error) {
	p := &pool{fs: cfg.FS, dir: cfg.FS.PathJoin(cfg.Dir, "pool"), size: cfg.ChunkSize, target: cfg.PoolFiles}
	if err := vfsutil.MkdirAll(p.fs, p.dir); err != nil {
		return nil, fmt.Errorf("creating pool directory: %w", err)
	}
	names, err := p.fs.List(p.dir)
	if err != nil {
		return nil, fmt.Errorf("listing pool: %w", err)
	}
	for _, n := range names {
		p.adopt(n)
	}
	return p, nil
}

// adopt records an existing pool file, and removes leftovers of a fill
// that was interrupted.
func (p *pool) adopt(name string) {
	if strings.HasSuffix(name, ".tmp") {
		_ = p.fs.Remove(p.fs.PathJoin(p.dir, name))
		return
	}
	n, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return
	}
	p.mu.ready = append(p.mu.ready, name)
	p.mu.next = max(p.mu.next, n+1)
}

func (p *pool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.ready)
}

// take renames a ready file to path.
func (p *pool) take(path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.mu.ready) == 0 {
		return errPoolEmpty
	}
	name := p.mu.ready[len(p.mu.ready)-1]
	if err := p.fs.Rename(p.fs.PathJoin(p.dir, name), path); err != nil {
		return fmt.Errorf("taking pool file %s: %w", name, err)
	}
	p.mu.ready = p.mu.ready[:len(p.mu.ready)-1]
	return nil
}

// fill prepares files until target are ready.
func (p *pool) fill() error {
	p.fillMu.Lock()
	defer p.fillMu.Unlock()
	for p.len() < p.target {
		if err := p.addOne(); err != nil {
			return err
		}
	}
	return nil
}

func (p *pool) addOne() error {
	p.mu.Lock()
	name := strconv.FormatUint(p.mu.next, 10)
	p.mu.next++
	p.mu.Unlock()
	path := p.fs.PathJoin(p.dir, name)
	if err := p.writeZeroed(path + ".tmp"); err != nil {
		_ = p.fs.Remove(path + ".tmp")
		return fmt.Errorf("preparing pool file: %w", err)
	}
	if err := p.fs.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("preparing pool file: %w", err)
	}
	if err := vfsutil.SyncDir(p.fs, p.dir); err != nil {
		return fmt.Errorf("syncing pool directory: %w", err)
	}
	p.mu.Lock()
	p.mu.ready = append(p.mu.ready, name)
	p.mu.Unlock()
	return nil
}

// writeZeroed writes a chunk-sized file of zeros and syncs it, so its
// blocks are allocated and written (no unwritten extents to convert on the
// chunk's first write).
func (p *pool) writeZeroed(path string) error {
	f, err := p.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < p.size && err == nil; off += int64(len(buf)) {
		_, err = f.WriteAt(buf[:min(int64(len(buf)), p.size-off)], off)
	}
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
