package worker

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"

	"basalt/rss/rsspb"
)

// fileState is where a partition file is in its life.
type fileState int

const (
	// fileOpen: accepting appends.
	fileOpen fileState = iota
	// fileCommitting: Commit began; appends are refused, the buffer is
	// written, then the file is cut, fsynced and closed.
	fileCommitting
	// fileGone: discarded (shuffle deleted, or the worker closed).
	fileGone
)

// pendingBatch is a batch in a partition file's buffer.
type pendingBatch struct {
	e    entry
	done func(error) // called once the batch is written or has failed
}

// partFile is one partition epoch's append-only file while it is being
// written. Batches are appended to an in-memory buffer that write turns
// into one write(2) at the file's end; the index (every written batch's
// entry) is kept in memory until Commit records it in Pebble.
type partFile struct {
	w    *Worker
	key  partKey
	dir  int    // index in Config.Dirs
	path string // the file

	// writeMu serializes writes, cutting, syncing and closing.
	writeMu sync.Mutex
	file    vfs.File // nil until the first write, and after commit; guarded by writeMu
	size    int64    // bytes of whole batches in the file; guarded by writeMu
	index   []entry  // the batches in the file, in order; guarded by writeMu
	synced  bool     // commit cut, fsynced and closed the file; guarded by writeMu

	mu struct {
		sync.Mutex
		state   fileState
		err     error // once set, every append and commit fails with it
		buf     []byte
		waiting []pendingBatch // the batches in buf, in order
		timer   *time.Timer    // writes buf FlushInterval after its first batch
	}
}

func newPartFile(w *Worker, k partKey, dir int) *partFile {
	fs := w.cfg.FS
	path := fs.PathJoin(w.shuffleDir(dir, k.shuffleKey), fileName(k))
	return &partFile{w: w, key: k, dir: dir, path: path}
}

// append buffers b and arranges for done to be called when b is written
// (nil) or fails. needWrite reports that the buffer reached FlushBytes
// (or that batching is off): the caller must then call write.
func (f *partFile) append(b *rsspb.Batch, done func(error)) (needWrite bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.appendableLocked(); err != nil {
		return false, err
	}
	e := entryOf(b)
	if f.mu.buf == nil {
		f.mu.buf = f.w.getBuf()
	}
	f.mu.buf = append(appendHeader(f.mu.buf, e), b.GetData()...)
	f.mu.waiting = append(f.mu.waiting, pendingBatch{e: e, done: done})
	cfg := &f.w.cfg
	if len(f.mu.buf) >= cfg.FlushBytes || cfg.FlushInterval < 0 {
		return true, nil
	}
	if f.mu.timer == nil {
		f.w.wg.Add(1)
		f.mu.timer = time.AfterFunc(cfg.FlushInterval, f.timerWrite)
	}
	return false, nil
}

// appendableLocked returns why the file takes no appends, or nil.
// REQUIRES: f.mu held.
func (f *partFile) appendableLocked() error {
	switch {
	case f.mu.err != nil:
		return f.mu.err
	case f.mu.state != fileOpen:
		return fmt.Errorf("%w: %v", ErrCommitted, f.key)
	}
	return nil
}

// timerWrite is the flush timer's callback.
func (f *partFile) timerWrite() {
	defer f.w.wg.Done()
	f.write()
}

// write writes the buffered batches with one write(2) at the end of the
// file and completes them: on success their entries join the index; on
// failure the file is cut back to its last whole batch and every one of
// them fails.
func (f *partFile) write() {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	buf, waiting, err := f.takeBuffer()
	if len(waiting) == 0 {
		return
	}
	if err == nil {
		err = f.writeLocked(buf)
	}
	if err == nil {
		f.recordLocked(waiting)
	} else if errors.Is(err, ErrDiskFull) {
		f.w.metrics.rejected.WithLabelValues(rejectDiskFull).Add(float64(len(waiting)))
	}
	f.w.putBuf(buf)
	for _, p := range waiting {
		p.done(err)
	}
}

// takeBuffer takes the buffer and its batches, stopping the flush timer;
// err is set when the file has failed.
func (f *partFile) takeBuffer() ([]byte, []pendingBatch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	buf, waiting := f.mu.buf, f.mu.waiting
	f.mu.buf, f.mu.waiting = nil, nil
	f.stopTimerLocked()
	return buf, waiting, f.mu.err
}

// stopTimerLocked stops the flush timer; if it had not fired, its
// callback will not run, so its WaitGroup count is released here.
// REQUIRES: f.mu held.
func (f *partFile) stopTimerLocked() {
	if f.mu.timer != nil && f.mu.timer.Stop() {
		f.w.wg.Done()
	}
	f.mu.timer = nil
}

// writeLocked writes buf at the end of the file, creating the file first
// if needed. A write that would eat into Config.DiskReserveBytes fails
// with ErrDiskFull without writing. If the write fails the file is cut
// back to f.size; if that fails too, the file fails for good.
// REQUIRES: f.writeMu held.
func (f *partFile) writeLocked(buf []byte) error {
	if err := f.w.checkReserve(f.dir, len(buf)); err != nil {
		return err // nothing written: nothing to cut back
	}
	if f.file == nil {
		if err := f.openLocked(); err != nil {
			return err
		}
	}
	n, err := f.file.WriteAt(buf, f.size)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	if err == nil {
		return nil
	}
	werr := ioError("writing", f.path, err)
	if cerr := truncate(f.file, f.size); cerr != nil {
		cerr = fmt.Errorf("cutting %s back to %d bytes after a failed write: %w", f.path, f.size, cerr)
		f.fail(cerr)
		return errors.Join(werr, cerr)
	}
	if !errors.Is(werr, ErrDiskFull) {
		f.fail(werr) // an I/O error: the page cache may have dropped what it had
	}
	f.w.log.Warn("partition file write failed; cut back to the last whole batch", "partition_file", f.path, "size", f.size, "err", werr)
	return werr
}

// openLocked creates the file (and its directory).
// REQUIRES: f.writeMu held.
func (f *partFile) openLocked() error {
	fs := f.w.cfg.FS
	if err := fs.MkdirAll(fs.PathDir(f.path), 0o755); err != nil {
		return ioError("creating the directory of", f.path, err)
	}
	file, err := fs.Create(f.path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return ioError("creating", f.path, err)
	}
	f.file = file
	return nil
}

// recordLocked gives the batches just written their offsets and adds them
// to the index.
// REQUIRES: f.writeMu held.
func (f *partFile) recordLocked(written []pendingBatch) {
	for _, p := range written {
		p.e.Offset = f.size
		f.size = p.e.end()
		f.index = append(f.index, p.e)
	}
}

// fail makes every later append and commit fail with err.
func (f *partFile) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.err == nil {
		f.mu.err = err
	}
}

// failure returns the error the file failed with, or nil.
func (f *partFile) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.state == fileGone {
		return nil
	}
	return f.mu.err
}

// commit makes the file durable: appends are refused from now on, the
// buffer is written, and the file is cut to its last whole batch,
// fsynced and closed. It returns the index to record. Calling it again
// after it succeeded returns the same index without I/O.
func (f *partFile) commit() ([]entry, error) {
	if err := f.beginCommit(); err != nil {
		return nil, err
	}
	f.write()
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if f.synced {
		return f.index, nil
	}
	if err := f.failure(); err != nil {
		return nil, err
	}
	if err := f.syncLocked(); err != nil {
		f.fail(err)
		return nil, err
	}
	f.synced = true
	return f.index, nil
}

// beginCommit stops appends.
func (f *partFile) beginCommit() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.state == fileGone {
		return f.mu.err
	}
	f.mu.state = fileCommitting
	return nil
}

// syncLocked cuts the file to f.size, fsyncs and closes it (creating it
// empty if no write ever succeeded).
// REQUIRES: f.writeMu held.
func (f *partFile) syncLocked() error {
	if f.file == nil {
		if err := f.openLocked(); err != nil {
			return err
		}
	}
	if err := truncate(f.file, f.size); err != nil {
		return fmt.Errorf("cutting %s to %d bytes: %w", f.path, f.size, err)
	}
	if err := f.file.Sync(); err != nil {
		return ioError("syncing", f.path, err)
	}
	err := f.file.Close()
	f.file = nil
	if err != nil {
		return ioError("closing", f.path, err)
	}
	return nil
}

// discard fails the buffered batches and every later append with err and
// closes the file. The caller removes the file if it should go.
func (f *partFile) discard(err error) {
	f.mu.Lock()
	f.mu.state = fileGone
	if f.mu.err == nil {
		f.mu.err = err
	}
	waiting := f.mu.waiting
	f.mu.buf, f.mu.waiting = nil, nil
	f.stopTimerLocked()
	f.mu.Unlock()
	for _, p := range waiting {
		p.done(err)
	}
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	if f.file != nil {
		_ = f.file.Close()
		f.file = nil
	}
}

// ioError wraps a filesystem error; a full disk (ENOSPC) becomes
// ErrDiskFull.
func ioError(verb, path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %s %s: %w", ErrDiskFull, verb, path, err)
	}
	return fmt.Errorf("%s %s: %w", verb, path, err)
}

// truncater is the optional capability of a vfs.File to change its size
// (files backed by an *os.File have it).
type truncater interface {
	Truncate(size int64) error
}

// errNoTruncate: the file can be neither truncated nor is it already of
// the wanted size.
var errNoTruncate = errors.New("worker: file cannot be truncated")

// truncate sets the size of file to size: through Truncate if the file
// has it, else ftruncate(2) on its descriptor; a file without either is
// fine only if it already has that size.
func truncate(file vfs.File, size int64) error {
	if t, ok := file.(truncater); ok {
		return t.Truncate(size)
	}
	if fd := file.Fd(); fd != vfs.InvalidFd {
		return unix.Ftruncate(int(fd), size)
	}
	st, err := file.Stat()
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("%w: it has %d bytes, want %d", errNoTruncate, st.Size(), size)
	}
	return nil
}
