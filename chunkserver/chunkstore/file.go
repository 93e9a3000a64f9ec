package chunkstore

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/vfsutil"
)

// Config configures a FileStore.
type Config struct {
	// Dir holds chunks/ (one file per chunk, named by chunk ID in decimal)
	// and pool/ (preallocated files). Required.
	Dir string
	// FS is the filesystem. Default vfs.Default; tests use a crashable
	// in-memory FS.
	FS vfs.FS
	// ChunkSize is the size of every chunk in bytes. Default 16 MiB. It
	// must not change for an existing Dir.
	ChunkSize int64
	// PoolFiles is how many preallocated files FillPool keeps ready.
	// Default 8; negative disables the pool (files are created on first
	// write).
	PoolFiles int
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the documented defaults; Dir must be
// set.
func DefaultConfig() Config {
	return Config{FS: vfs.Default, ChunkSize: 16 << 20, PoolFiles: 8, Logger: slog.Default()}
}

// Validate fills zero fields with defaults and checks the rest.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.FS == nil {
		c.FS = d.FS
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = d.ChunkSize
	}
	if c.PoolFiles == 0 {
		c.PoolFiles = d.PoolFiles
	}
	switch {
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	case c.ChunkSize < 4096 || c.ChunkSize%4096 != 0:
		return fmt.Errorf("%w: ChunkSize %d is not a positive multiple of 4096", ErrInvalidConfig, c.ChunkSize)
	}
	return nil
}

// FileStore keeps one file per chunk. Create it with Open.
type FileStore struct {
	cfg      Config
	chunkDir string
	pool     *pool

	// syncMu serializes Sync, Delete and Close: a file is never closed
	// while Sync fsyncs it, and a Sync never returns while an earlier one
	// is still syncing files it took (so "durable when Sync returns" holds
	// for every caller). Writes and reads never take it, so a long Sync
	// does not block I/O.
	syncMu sync.Mutex

	mu struct {
		sync.Mutex
		open     map[uint64]vfs.File // every existing chunk, open
		dirty    map[uint64]bool     // written since the last Sync
		dirDirty bool                // chunk files created or removed since the last Sync
		closed   bool
	}
}

var _ Store = (*FileStore)(nil)

// Open opens (or creates) the store under cfg.Dir and opens every chunk
// file found there. Call FillPool to prepare preallocated files.
func Open(cfg Config) (*FileStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &FileStore{cfg: cfg, chunkDir: cfg.FS.PathJoin(cfg.Dir, "chunks")}
	s.mu.open = map[uint64]vfs.File{}
	s.mu.dirty = map[uint64]bool{}
	for _, d := range []string{cfg.Dir, s.chunkDir} {
		if err := vfsutil.MkdirAll(cfg.FS, d); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	var err error
	if s.pool, err = openPool(cfg); err != nil {
		return nil, err
	}
	if err := s.openChunks(); err != nil {
		s.closeFiles()
		return nil, err
	}
	return s, nil
}

func (s *FileStore) openChunks() error {
	names, err := s.cfg.FS.List(s.chunkDir)
	if err != nil {
		return fmt.Errorf("listing chunks: %w", err)
	}
	for _, n := range names {
		id, perr := strconv.ParseUint(n, 10, 64)
		if perr != nil {
			continue // a temporary or foreign file
		}
		f, err := s.cfg.FS.OpenReadWrite(s.cfg.FS.PathJoin(s.chunkDir, n), vfs.WriteCategoryUnspecified)
		if err != nil {
			return fmt.Errorf("opening chunk %d: %w", id, err)
		}
		s.mu.open[id] = f
	}
	return nil
}

// ChunkSize implements Store.
func (s *FileStore) ChunkSize() int64 { return s.cfg.ChunkSize }

// FillPool creates preallocated files until the pool holds PoolFiles. The
// chunkserver runs it in the background; it is safe to call concurrently
// with everything else.
func (s *FileStore) FillPool() error { return s.pool.fill() }

// PoolLen returns the number of preallocated files ready.
func (s *FileStore) PoolLen() int { return s.pool.len() }

// file returns chunk's open file, creating the chunk if create is set.
func (s *FileStore) file(chunk uint64, create bool) (vfs.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	if f := s.mu.open[chunk]; f != nil || !create {
		return f, nil
	}
	f, err := s.createLocked(chunk)
	if err != nil {
		return nil, fmt.Errorf("creating chunk %d: %w", chunk, err)
	}
	s.mu.open[chunk] = f
	s.mu.dirDirty = true
	return f, nil
}

// createLocked makes the chunk's file from a pool file if one is ready,
// else from scratch.
// REQUIRES: s.mu held.
func (s *FileStore) createLocked(chunk uint64) (vfs.File, error) {
	path := s.cfg.FS.PathJoin(s.chunkDir, strconv.FormatUint(chunk, 10))
	if err := s.pool.take(path); err == nil {
		return s.cfg.FS.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	} else if !errors.Is(err, errPoolEmpty) {
		return nil, err
	}
	f, err := s.cfg.FS.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, err
	}
	if err := f.Preallocate(0, s.cfg.ChunkSize); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// WriteAt implements Store.
func (s *FileStore) WriteAt(chunk uint64, off int64, p []byte) error {
	if err := checkRange(s.cfg.ChunkSize, off, int64(len(p))); err != nil {
		return err
	}
	f, err := s.file(chunk, true)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(p, off); err != nil {
		return fmt.Errorf("writing chunk %d at %d: %w", chunk, off, err)
	}
	s.markDirty(chunk)
	return nil
}

func (s *FileStore) markDirty(chunk uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.dirty[chunk] = true
}

// ReadAt implements Store.
func (s *FileStore) ReadAt(chunk uint64, off int64, p []byte) error {
	if err := checkRange(s.cfg.ChunkSize, off, int64(len(p))); err != nil {
		return err
	}
	f, err := s.file(chunk, false)
	if err != nil {
		return err
	}
	if f == nil {
		clear(p)
		return nil
	}
	n, err := f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:]) // a file shorter than the chunk: the rest was never written
		err = nil
	}
	if err != nil {
		return fmt.Errorf("reading chunk %d at %d: %w", chunk, off, err)
	}
	return nil
}

var zeros = make([]byte, 64<<10)

// Discard implements Store; it zeroes the range of an existing chunk.
func (s *FileStore) Discard(chunk uint64, off, length int64) error {
	if err := checkRange(s.cfg.ChunkSize, off, length); err != nil {
		return err
	}
	if !s.Exists(chunk) {
		return nil
	}
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if err := s.WriteAt(chunk, off, zeros[:n]); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// Count returns the number of chunks in the store.
func (s *FileStore) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.open)
}

// Exists implements Store.
func (s *FileStore) Exists(chunk uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.open[chunk] != nil
}

// Delete implements Store.
func (s *FileStore) Delete(chunk uint64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.mu.open[chunk]
	if f == nil {
		return nil
	}
	delete(s.mu.open, chunk)
	delete(s.mu.dirty, chunk)
	_ = f.Close()
	path := s.cfg.FS.PathJoin(s.chunkDir, strconv.FormatUint(chunk, 10))
	if err := s.cfg.FS.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting chunk %d: %w", chunk, err)
	}
	s.mu.dirDirty = true
	return nil
}

// Sync implements Store: it fsyncs every chunk file dirtied before the
// call, then the chunk directories if chunks were created or removed. It
// holds no lock that I/O needs while it fsyncs: writes that land meanwhile
// stay dirty for the next Sync.
func (s *FileStore) Sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	files, dirDirty, err := s.takeDirty()
	if err != nil {
		return err
	}
	for id, f := range files {
		if err := f.SyncData(); err != nil {
			s.redirty(files, dirDirty)
			return fmt.Errorf("syncing chunk %d: %w", id, err)
		}
	}
	if !dirDirty {
		return nil
	}
	if err := errors.Join(vfsutil.SyncDir(s.cfg.FS, s.chunkDir), vfsutil.SyncDir(s.cfg.FS, s.pool.dir)); err != nil {
		s.redirty(nil, true)
		return fmt.Errorf("syncing chunk directories: %w", err)
	}
	return nil
}

// takeDirty returns the dirty files and clears the dirty marks.
func (s *FileStore) takeDirty() (map[uint64]vfs.File, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, false, ErrClosed
	}
	files := make(map[uint64]vfs.File, len(s.mu.dirty))
	for id := range s.mu.dirty {
		files[id] = s.mu.open[id]
	}
	clear(s.mu.dirty)
	dirDirty := s.mu.dirDirty
	s.mu.dirDirty = false
	return files, dirDirty, nil
}

// redirty marks files (and the directories) dirty again after a failed
// Sync, so the next Sync retries them.
func (s *FileStore) redirty(files map[uint64]vfs.File, dir bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range files {
		if s.mu.open[id] != nil {
			s.mu.dirty[id] = true
		}
	}
	s.mu.dirDirty = s.mu.dirDirty || dir
}

// Close implements Store. It does not sync.
func (s *FileStore) Close() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil
	}
	s.mu.closed = true
	s.closeFilesLocked()
	return nil
}

func (s *FileStore) closeFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeFilesLocked()
}

// REQUIRES: s.mu held.
func (s *FileStore) closeFilesLocked() {
	for id, f := range s.mu.open {
		_ = f.Close()
		delete(s.mu.open, id)
	}
}
