package worker

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"basalt/internal/pebbleutil"
	"basalt/internal/vfsutil"
)

// commitShuffle commits every open partition file of sk (see Commit) and
// returns how many partition files of sk are committed on this worker.
func (w *Worker) commitShuffle(sk shuffleKey) (int, error) {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	files, marked, err := w.beginCommit(sk)
	if err != nil {
		return 0, err
	}
	files, index := w.commitFiles(files)
	dirs := map[string]bool{}
	for _, f := range files {
		dirs[w.cfg.FS.PathDir(f.path)] = true
	}
	for dir := range dirs {
		if err := w.syncShuffleDir(dir); err != nil {
			return 0, err
		}
	}
	if len(files) > 0 || !marked {
		if err := w.recordCommit(sk, files, index); err != nil {
			return 0, err
		}
	}
	n := w.finishCommit(sk, files)
	if len(files) > 0 {
		w.log.Info("committed shuffle", "app", sk.app, "shuffle", sk.shuffle, "partition_files", len(files), "committed_total", n)
	}
	return n, nil
}

// syncShuffleDir makes a shuffle directory's entries durable, and its
// own entry and its application directory's (both made by the first
// write without a sync). The apps directory above was synced by New.
func (w *Worker) syncShuffleDir(dir string) error {
	fs := w.cfg.FS
	for _, d := range []string{dir, fs.PathDir(dir), fs.PathDir(fs.PathDir(dir))} {
		if err := vfsutil.SyncDir(fs, d); err != nil {
			return ioError("syncing directory", d, err)
		}
	}
	return nil
}

// commitFiles commits each file (Config.CommitParallelism at a time) and
// returns those that succeeded with their encoded indexes, in the order
// of files. A file that fails (an I/O error: acknowledged batches may be
// lost) is left out and stays uncommitted; Fetch reports it as
// ErrPartitionLost so readers use the replica, and the shuffle's other
// files are committed regardless.
func (w *Worker) commitFiles(files []*partFile) ([]*partFile, [][]byte) {
	indexes := make([][]byte, len(files))
	errs := make([]error, len(files))
	sem := make(chan struct{}, w.cfg.CommitParallelism)
	var wg sync.WaitGroup
	for i, f := range files {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var es []entry
			if es, errs[i] = f.commit(); errs[i] == nil {
				indexes[i] = encodeIndex(es)
			}
		})
	}
	wg.Wait()
	var ok []*partFile
	var index [][]byte
	for i, f := range files {
		if errs[i] != nil {
			w.log.Error("partition file lost: not committed", "partition_file", f.key.String(), "err", errs[i])
			continue
		}
		ok, index = append(ok, f), append(index, indexes[i])
	}
	return ok, index
}

// beginCommit marks sk committed (no more pushes) and returns its open
// files and whether its committed marker is already in the index.
func (w *Worker) beginCommit(sk shuffleKey) ([]*partFile, bool, error) {
	w.mu.Lock()
	switch {
	case w.mu.closed:
		w.mu.Unlock()
		return nil, false, ErrClosed
	case w.mu.deletedApps[sk.app] || w.mu.shuffles[sk] != nil && w.mu.shuffles[sk].deleted:
		w.mu.Unlock()
		return nil, false, fmt.Errorf("%w: app %s shuffle %d: deleted", ErrPartitionNotFound, sk.app, sk.shuffle)
	}
	st := w.stateLocked(sk)
	st.committed = true
	marked := st.marked
	w.mu.Unlock()
	return w.openFiles(func(k shuffleKey) bool { return k == sk }), marked, nil
}

// recordCommit writes the files' indexes and the shuffle's committed
// marker in one synced Pebble batch.
func (w *Worker) recordCommit(sk shuffleKey, files []*partFile, index [][]byte) error {
	return w.withDB(func(db *pebble.DB) error {
		b := db.NewBatch()
		defer b.Close()
		for i, f := range files {
			if err := b.Set(indexKey(f.key), index[i], nil); err != nil {
				return err
			}
		}
		if err := b.Set(shufflePrefix(shuffleKeyTag, sk), []byte{}, nil); err != nil {
			return err
		}
		if err := db.Apply(b, pebble.Sync); err != nil {
			return ioError("recording the index of", fmt.Sprintf("app %s shuffle %d", sk.app, sk.shuffle), err)
		}
		return nil
	})
}

// finishCommit moves the committed files from open to done and returns
// the number of committed files of sk.
func (w *Worker) finishCommit(sk shuffleKey, files []*partFile) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.stateLocked(sk)
	st.marked = true
	for _, f := range files {
		pe := partEpoch{f.key.partition, f.key.epoch}
		delete(st.open, pe)
		st.done[pe] = f.dir
		w.mu.perDir[f.dir]--
		w.mu.active--
	}
	return len(st.done)
}

// deleteShuffles removes shuffle of app, or every shuffle of app when
// shuffle < 0: open files are discarded (their pending pushes fail with
// NotFound), index entries deleted, and the directories removed. Later
// pushes to them fail with NotFound until the worker restarts.
func (w *Worker) deleteShuffles(app string, shuffle int32) error {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	files, err := w.forget(app, shuffle)
	if err != nil {
		return err
	}
	for _, f := range files {
		f.discard(fmt.Errorf("%w: %v: deleted", ErrPartitionNotFound, f.key))
	}
	if err := w.deleteIndex(app, shuffle); err != nil {
		return err
	}
	var errs []error
	for d, dir := range w.cfg.Dirs {
		path := w.cfg.FS.PathJoin(dir, appsDir, app)
		if shuffle >= 0 {
			path = w.shuffleDir(d, shuffleKey{app, shuffle})
		}
		if err := w.cfg.FS.RemoveAll(path); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", path, err))
		}
	}
	w.log.Info("deleted shuffle files", "app", app, "shuffle", shuffle, "open_files", len(files))
	return errors.Join(errs...)
}

// forget drops the shuffle's (or the application's) state, leaving
// tombstones that refuse later pushes, and returns its open files.
func (w *Worker) forget(app string, shuffle int32) ([]*partFile, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.closed {
		return nil, ErrClosed
	}
	var files []*partFile
	for sk, st := range w.mu.shuffles {
		if sk.app != app || shuffle >= 0 && sk.shuffle != shuffle {
			continue
		}
		for _, f := range st.open {
			files = append(files, f)
			w.mu.perDir[f.dir]--
			w.mu.active--
		}
		delete(w.mu.shuffles, sk)
	}
	w.notifyLocked()
	if shuffle < 0 {
		w.mu.deletedApps[app] = true
	} else {
		st := newShuffleState()
		st.deleted = true
		w.mu.shuffles[shuffleKey{app, shuffle}] = st
	}
	return files, nil
}

// deleteIndex deletes the index entries and committed markers of the
// shuffle (or of the application when shuffle < 0), synced.
func (w *Worker) deleteIndex(app string, shuffle int32) error {
	return w.withDB(func(db *pebble.DB) error {
		b := db.NewBatch()
		defer b.Close()
		for _, tag := range []byte{indexKeyTag, shuffleKeyTag} {
			p := appPrefix(tag, app)
			if shuffle >= 0 {
				p = shufflePrefix(tag, shuffleKey{app, shuffle})
			}
			if err := b.DeleteRange(p, pebbleutil.PrefixEnd(p), nil); err != nil {
				return err
			}
		}
		if err := db.Apply(b, pebble.Sync); err != nil {
			return fmt.Errorf("deleting the index of app %s shuffle %d: %w", app, shuffle, err)
		}
		return nil
	})
}
