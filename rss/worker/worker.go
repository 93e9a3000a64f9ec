package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"basalt/internal/pebbleutil"
	"basalt/internal/vfsutil"
	"basalt/rss/rsspb"
)

// Worker stores and serves shuffle partitions; it implements
// rsspb.WorkerServer. Create it with New, serve it with a grpc.Server,
// stop it with Drain (optional) and Close.
type Worker struct {
	rsspb.UnimplementedWorkerServer

	cfg     Config
	log     *slog.Logger
	metrics *metrics
	mem     *budget
	peers   *peers
	bufPool sync.Pool // partition file buffers (*[]byte)

	// dbMu guards db: users hold it shared, Close exclusively.
	dbMu sync.RWMutex
	db   *pebble.DB // nil once closed

	commitMu sync.Mutex     // serializes Commit, DeleteShuffle and Close
	wg       sync.WaitGroup // flush timers and stream goroutines
	streams  sync.WaitGroup // running Push and Replicate handlers
	draining chan struct{}  // closed by Drain
	closing  chan struct{}  // closed by Close

	mu struct {
		sync.Mutex
		closed, draining bool
		decommissioning  bool          // StartDecommission was called
		streams          int           // running Push and Replicate handlers
		changed          chan struct{} // closed and replaced when data is deleted or a stream ends
		shuffles         map[shuffleKey]*shuffleState
		deletedApps      map[string]bool // applications deleted while running
		perDir           []int           // open partition files per data directory
		active           int             // open partition files
		next             int             // the data directory the next tie goes to
	}
}

var _ rsspb.WorkerServer = (*Worker)(nil)

// partEpoch names a partition file within its shuffle.
type partEpoch struct{ partition, epoch int32 }

// shuffleState is what the worker holds of one shuffle.
type shuffleState struct {
	committed bool                    // Commit began: pushes are refused
	marked    bool                    // the committed marker is in Pebble
	deleted   bool                    // DeleteShuffle removed it: pushes are refused
	open      map[partEpoch]*partFile // files being written, or committed but not yet indexed
	done      map[partEpoch]int       // committed files: their data directory (-1: missing)
}

func newShuffleState() *shuffleState {
	return &shuffleState{open: map[partEpoch]*partFile{}, done: map[partEpoch]int{}}
}

// New opens a Worker on cfg.Dirs: it creates the directories if needed,
// opens the index, and deletes every partition file that is not committed
// (left by a crash or a stop before commit). Committed partitions are
// served again.
func New(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), draining: make(chan struct{}), closing: make(chan struct{})}
	w.mem = newBudget(cfg.MemoryLimitBytes, cfg.AppMemoryLimitBytes)
	w.mu.shuffles = map[shuffleKey]*shuffleState{}
	w.mu.changed = make(chan struct{})
	w.mu.deletedApps = map[string]bool{}
	w.mu.perDir = make([]int, len(cfg.Dirs))
	w.peers = newPeers(cfg.Dialer)
	for _, d := range cfg.Dirs {
		if err := vfsutil.MkdirAll(cfg.FS, cfg.FS.PathJoin(d, appsDir)); err != nil {
			return nil, fmt.Errorf("creating data directory %s: %w", d, err)
		}
	}
	idx := cfg.FS.PathJoin(cfg.Dirs[0], "index")
	db, err := pebble.Open(idx, &pebble.Options{FS: cfg.FS, Logger: pebbleutil.Logger(w.log)})
	if err != nil {
		return nil, fmt.Errorf("opening index %s: %w", idx, err)
	}
	w.db = db
	if err := w.recover(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return w, nil
}

// recover loads the committed partitions from the index, finds their
// files and deletes every other partition file.
func (w *Worker) recover() error {
	n, err := w.loadIndex()
	if err != nil {
		return err
	}
	removed := 0
	for d := range w.cfg.Dirs {
		r, err := w.scanDir(d)
		if err != nil {
			return err
		}
		removed += r
	}
	for sk, st := range w.mu.shuffles {
		for pe, d := range st.done {
			if d < 0 {
				k := partKey{sk, pe.partition, pe.epoch}
				w.log.Error("committed partition file missing from every data directory", "partition_file", k.String())
			}
		}
	}
	w.log.Info("rss worker opened", "dirs", w.cfg.Dirs, "committed_partitions", n, "removed_uncommitted_files", removed)
	return nil
}

// loadIndex reads the committed shuffles and partition files.
func (w *Worker) loadIndex() (int, error) {
	it, err := w.db.NewIter(nil)
	if err != nil {
		return 0, fmt.Errorf("reading index: %w", err)
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if k, ok := parseIndexKey(it.Key()); ok {
			st := w.stateLocked(k.shuffleKey)
			st.committed, st.done[partEpoch{k.partition, k.epoch}] = true, -1
			n++
		} else if sk, ok := parseShuffleKey(it.Key()); ok {
			st := w.stateLocked(sk)
			st.committed, st.marked = true, true
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("reading index: %w", err)
	}
	return n, nil
}

// stateLocked returns the shuffle's state, creating it.
// REQUIRES: w.mu held (or w not yet shared).
func (w *Worker) stateLocked(sk shuffleKey) *shuffleState {
	st := w.mu.shuffles[sk]
	if st == nil {
		st = newShuffleState()
		w.mu.shuffles[sk] = st
	}
	return st
}

// scanDir walks data directory d: committed files are located, other
// partition files removed. Foreign files are left alone.
func (w *Worker) scanDir(d int) (removed int, err error) {
	fs := w.cfg.FS
	root := fs.PathJoin(w.cfg.Dirs[d], appsDir)
	apps, err := fs.List(root)
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", root, err)
	}
	for _, app := range apps {
		if checkApp(app) != nil {
			continue
		}
		shuffles, err := fs.List(fs.PathJoin(root, app))
		if err != nil {
			continue // not a directory
		}
		for _, s := range shuffles {
			id, perr := strconv.ParseInt(s, 10, 32)
			if perr != nil || id < 0 {
				continue
			}
			r, err := w.scanShuffle(d, shuffleKey{app, int32(id)})
			if err != nil {
				return removed, err
			}
			removed += r
		}
		_ = fs.Remove(fs.PathJoin(root, app)) // only succeeds when empty
	}
	return removed, nil
}

// scanShuffle handles one shuffle directory of data directory d.
func (w *Worker) scanShuffle(d int, sk shuffleKey) (removed int, err error) {
	fs := w.cfg.FS
	dir := w.shuffleDir(d, sk)
	names, err := fs.List(dir)
	if err != nil {
		return 0, nil // not a directory
	}
	st := w.mu.shuffles[sk]
	for _, name := range names {
		p, e, ok := parseFileName(name)
		if !ok {
			continue
		}
		pe := partEpoch{p, e}
		if at, ok := st.doneAt(pe); ok && at < 0 {
			st.done[pe] = d
			continue
		} else if ok {
			w.log.Warn("committed partition file found twice; keeping the first", "partition_file", fs.PathJoin(dir, name), "dir", w.cfg.Dirs[at])
			continue
		}
		if err := fs.Remove(fs.PathJoin(dir, name)); err != nil {
			return removed, fmt.Errorf("removing uncommitted partition file %s: %w", fs.PathJoin(dir, name), err)
		}
		removed++
	}
	_ = fs.Remove(dir) // only succeeds when empty
	return removed, nil
}

// doneAt returns the data directory of a committed file; st may be nil.
func (st *shuffleState) doneAt(pe partEpoch) (int, bool) {
	if st == nil {
		return 0, false
	}
	d, ok := st.done[pe]
	return d, ok
}

// openFile returns the open file of pe, or nil; st may be nil.
func (st *shuffleState) openFile(pe partEpoch) *partFile {
	if st == nil {
		return nil
	}
	return st.open[pe]
}

// shuffleDir returns the directory of a shuffle's files in data
// directory d.
func (w *Worker) shuffleDir(d int, sk shuffleKey) string {
	return w.cfg.FS.PathJoin(w.cfg.Dirs[d], appsDir, sk.app, strconv.Itoa(int(sk.shuffle)))
}

// fileFor returns the open partition file of k, creating it (in memory:
// the file itself is created by its first write).
func (w *Worker) fileFor(k partKey) (*partFile, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.writableLocked(k); err != nil {
		return nil, err
	}
	st := w.stateLocked(k.shuffleKey)
	pe := partEpoch{k.partition, k.epoch}
	if f := st.open[pe]; f != nil {
		return f, nil
	}
	d := w.pickDirLocked()
	f := newPartFile(w, k, d)
	st.open[pe] = f
	w.mu.perDir[d]++
	w.mu.active++
	return f, nil
}

// writableLocked returns why k takes no pushes, or nil.
// REQUIRES: w.mu held.
func (w *Worker) writableLocked(k partKey) error {
	st := w.mu.shuffles[k.shuffleKey]
	switch {
	case w.mu.closed:
		return ErrClosed
	case w.mu.deletedApps[k.app] || st != nil && st.deleted:
		return fmt.Errorf("%w: %v: deleted", ErrPartitionNotFound, k)
	case st != nil && st.committed:
		return fmt.Errorf("%w: %v", ErrCommitted, k)
	}
	return nil
}

// writable is writableLocked for callers without the lock.
func (w *Worker) writable(k partKey) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writableLocked(k)
}

// pickDirLocked returns the data directory with the fewest open partition
// files, taking ties in turn.
// REQUIRES: w.mu held.
func (w *Worker) pickDirLocked() int {
	n := len(w.mu.perDir)
	best := w.mu.next % n
	for i := 1; i < n; i++ {
		if d := (w.mu.next + i) % n; w.mu.perDir[d] < w.mu.perDir[best] {
			best = d
		}
	}
	w.mu.next = best + 1
	return best
}

// lookup returns the data directory of the committed partition file k.
func (w *Worker) lookup(k partKey) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.mu.shuffles[k.shuffleKey]
	pe := partEpoch{k.partition, k.epoch}
	if d, ok := st.doneAt(pe); ok {
		return d, nil
	}
	if f := st.openFile(pe); f != nil {
		if err := f.failure(); err != nil {
			return 0, fmt.Errorf("%w: %v: %w", ErrPartitionLost, k, err)
		}
		return 0, fmt.Errorf("%w: %v", ErrNotCommitted, k)
	}
	return 0, fmt.Errorf("%w: %v", ErrPartitionNotFound, k)
}

// withDB runs fn on the index unless the worker is closed.
func (w *Worker) withDB(fn func(*pebble.DB) error) error {
	w.dbMu.RLock()
	defer w.dbMu.RUnlock()
	if w.db == nil {
		return ErrClosed
	}
	return fn(w.db)
}

// getBuf returns an empty partition file buffer.
func (w *Worker) getBuf() []byte {
	if p, ok := w.bufPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return make([]byte, 0, w.cfg.FlushBytes+64<<10)
}

// putBuf recycles a buffer unless it grew well past FlushBytes.
func (w *Worker) putBuf(b []byte) {
	if b != nil && cap(b) <= 2*w.cfg.FlushBytes+64<<10 {
		w.bufPool.Put(&b)
	}
}

// DiskFreeBytes returns the free bytes of the data directories'
// filesystems, summed (a filesystem holding two directories counts
// twice); directories whose usage cannot be read count 0.
func (w *Worker) DiskFreeBytes() uint64 {
	var sum uint64
	for _, d := range w.cfg.Dirs {
		if free, err := w.dirFree(d); err == nil {
			sum += free
		}
	}
	return sum
}

func (w *Worker) dirFree(dir string) (uint64, error) {
	u, err := w.cfg.FS.GetDiskUsage(dir)
	return u.AvailBytes, err
}

// checkReserve returns ErrDiskFull when writing n more bytes to data
// directory dir (an index into Config.Dirs) would leave less than
// Config.DiskReserveBytes free on its filesystem. A filesystem whose
// usage cannot be read is not checked.
func (w *Worker) checkReserve(dir, n int) error {
	reserve := w.cfg.DiskReserveBytes
	if reserve <= 0 {
		return nil
	}
	path := w.cfg.Dirs[dir]
	free, err := w.dirFree(path)
	if err != nil || free >= uint64(n)+uint64(reserve) {
		return nil
	}
	return fmt.Errorf("%w: writing %d bytes in %s would leave less than the %d bytes reserved for the index (%d free)",
		ErrDiskFull, n, path, reserve, free)
}

// MemoryUsedBytes returns the bytes of batches received and not yet
// acknowledged (what MemoryLimitBytes bounds).
func (w *Worker) MemoryUsedBytes() uint64 { return uint64(max(w.mem.used.Load(), 0)) }

// ActivePartitions returns the number of partition files open for
// writing (pushed to and not yet committed).
func (w *Worker) ActivePartitions() int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int32(w.mu.active)
}

// Health returns nil while the worker serves (decommissioning included),
// ErrDraining or ErrClosed otherwise, or the error of a data directory
// it cannot stat.
func (w *Worker) Health() error {
	w.mu.Lock()
	closed, draining := w.mu.closed, w.mu.draining
	w.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case draining:
		return ErrDraining
	}
	for _, d := range w.cfg.Dirs {
		if _, err := w.cfg.FS.Stat(d); err != nil {
			return fmt.Errorf("data directory %s: %w", d, err)
		}
	}
	return nil
}

// startStream registers a Push or Replicate handler, unless the worker
// is draining, decommissioning or closed. The caller calls endStream
// when it ends.
func (w *Worker) startStream() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.mu.closed:
		return ErrClosed
	case w.mu.draining:
		return ErrDraining
	case w.mu.decommissioning:
		return ErrDecommissioning
	}
	w.streams.Add(1)
	w.mu.streams++
	return nil
}

// endStream unregisters a handler startStream registered.
func (w *Worker) endStream() {
	w.mu.Lock()
	w.mu.streams--
	w.notifyLocked()
	w.mu.Unlock()
	w.streams.Done()
}

// notifyLocked wakes the waiters of WaitDecommissioned.
// REQUIRES: w.mu held.
func (w *Worker) notifyLocked() {
	close(w.mu.changed)
	w.mu.changed = make(chan struct{})
}

// spawn runs fn on a goroutine that Close waits for, unless the worker
// is closed.
func (w *Worker) spawn(fn func()) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.closed {
		return ErrClosed
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		fn()
	}()
	return nil
}

// Drain stops taking pushes: new Push and Replicate streams are refused,
// and each open one stops reading requests, acknowledges what it has
// accepted and ends with Unavailable (ErrDraining). Drain returns when
// every stream has ended, or ctx's error when ctx ends first. Fetch,
// Commit and DeleteShuffle keep working.
func (w *Worker) Drain(ctx context.Context) error {
	w.mu.Lock()
	if !w.mu.draining {
		w.mu.draining = true
		close(w.draining)
	}
	w.mu.Unlock()
	done := make(chan struct{})
	go func() {
		w.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the worker: streams still open end with Unavailable (their
// unacknowledged batches are not stored), uncommitted partition files are
// closed (the next New deletes them), and the index is closed. A Commit
// or DeleteShuffle in progress finishes first. Stop the gRPC server
// before or after; calls that arrive later fail with Unavailable.
func (w *Worker) Close() error {
	w.mu.Lock()
	if w.mu.closed {
		w.mu.Unlock()
		return nil
	}
	w.mu.closed = true
	close(w.closing)
	w.mu.Unlock()
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	for _, f := range w.openFiles(func(shuffleKey) bool { return true }) {
		f.discard(ErrClosed)
	}
	w.wg.Wait()
	w.dbMu.Lock()
	err := w.db.Close()
	w.db = nil
	w.dbMu.Unlock()
	return errors.Join(err, w.peers.close())
}

// openFiles returns the open partition files of the shuffles match
// selects, in key order.
func (w *Worker) openFiles(match func(shuffleKey) bool) []*partFile {
	w.mu.Lock()
	defer w.mu.Unlock()
	var fs []*partFile
	for sk, st := range w.mu.shuffles {
		if match(sk) {
			for _, f := range st.open {
				fs = append(fs, f)
			}
		}
	}
	slices.SortFunc(fs, func(a, b *partFile) int { return compareKeys(a.key, b.key) })
	return fs
}

func compareKeys(a, b partKey) int {
	return cmp.Or(strings.Compare(a.app, b.app), cmp.Compare(a.shuffle, b.shuffle),
		cmp.Compare(a.partition, b.partition), cmp.Compare(a.epoch, b.epoch))
}
