package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/rss/rsspb"
)

// fetchFilter selects the batches a Fetch returns.
type fetchFilter struct {
	winners    map[int32]int32 // map index -> attempt; nil: every attempt
	start, end int32           // map range [start, end); end 0: no bound
}

func newFetchFilter(req *rsspb.FetchRequest) fetchFilter {
	f := fetchFilter{start: req.GetStartMap(), end: req.GetEndMap()}
	if len(req.GetWinners()) > 0 {
		f.winners = make(map[int32]int32, len(req.GetWinners()))
		for _, mw := range req.GetWinners() {
			f.winners[mw.GetMapIndex()] = mw.GetAttempt()
		}
	}
	return f
}

// want reports whether the batch e is selected: its map is in range and,
// when winners are given, its map has a winner and e is of that attempt.
func (f fetchFilter) want(e entry) bool {
	if e.Map < f.start || f.end > 0 && e.Map >= f.end {
		return false
	}
	if f.winners == nil {
		return true
	}
	a, ok := f.winners[e.Map]
	return ok && a == e.Attempt
}

// fetch streams the selected batches of committed partition k to send,
// in file order, in responses of at most FetchChunkBytes of data (a
// larger batch alone), verifying each batch against the index and its
// CRC.
func (w *Worker) fetch(ctx context.Context, k partKey, filter fetchFilter, send func(*rsspb.FetchResponse) error) error {
	d, err := w.lookup(k)
	if err != nil {
		return err
	}
	es, err := w.readIndex(k)
	if err != nil {
		return err
	}
	if d < 0 {
		return &CorruptError{App: k.app, Shuffle: k.shuffle, Partition: k.partition, Epoch: k.epoch,
			Path: fileName(k), Reason: "the committed partition file is missing"}
	}
	r, err := w.openReader(k, d)
	if err != nil {
		return err
	}
	defer r.close()
	return r.stream(ctx, es, filter, send)
}

// readIndex returns the index of committed partition file k.
func (w *Worker) readIndex(k partKey) ([]entry, error) {
	var es []entry
	err := w.withDB(func(db *pebble.DB) error {
		v, closer, err := db.Get(indexKey(k))
		if errors.Is(err, pebble.ErrNotFound) {
			return fmt.Errorf("%w: %v", ErrPartitionNotFound, k) // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("reading the index of %v: %w", k, err)
		}
		defer closer.Close()
		if es, err = decodeIndex(v); err != nil {
			return fmt.Errorf("decoding the index of %v: %w", k, err)
		}
		return nil
	})
	return es, err
}

// fileReader reads and verifies the batches of one committed file.
type fileReader struct {
	w    *Worker
	k    partKey
	path string
	file vfs.File
}

func (w *Worker) openReader(k partKey, d int) (*fileReader, error) {
	path := w.cfg.FS.PathJoin(w.shuffleDir(d, k.shuffleKey), fileName(k))
	file, err := w.cfg.FS.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &CorruptError{App: k.app, Shuffle: k.shuffle, Partition: k.partition, Epoch: k.epoch,
			Path: path, Reason: "the committed partition file is missing"}
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return &fileReader{w: w, k: k, path: path, file: file}, nil
}

func (r *fileReader) close() { _ = r.file.Close() }

// stream sends the selected batches of es. Each run of selected,
// contiguous batches is read with one ReadAt (up to FetchChunkBytes).
func (r *fileReader) stream(ctx context.Context, es []entry, filter fetchFilter, send func(*rsspb.FetchResponse) error) error {
	chunk := int64(r.w.cfg.FetchChunkBytes)
	resp, respBytes := &rsspb.FetchResponse{}, int64(0)
	flush := func() error {
		if len(resp.Batches) == 0 {
			return nil
		}
		if err := send(resp); err != nil {
			return err
		}
		r.w.metrics.fetchedBytes.Add(float64(respBytes))
		resp, respBytes = &rsspb.FetchResponse{}, 0
		return nil
	}
	for i := 0; i < len(es); {
		if !filter.want(es[i]) {
			i++
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		j := runEnd(es, i, filter, chunk)
		bs, n, err := r.read(es[i:j])
		if err != nil {
			return err
		}
		if respBytes+n > chunk {
			if err := flush(); err != nil {
				return err
			}
		}
		resp.Batches, respBytes = append(resp.Batches, bs...), respBytes+n
		i = j
	}
	return flush()
}

// runEnd returns the end of the run starting at es[i]: the following
// batches that are selected and contiguous in the file, while the run's
// data stays within chunk bytes (the first batch always counts).
func runEnd(es []entry, i int, filter fetchFilter, chunk int64) int {
	data := int64(es[i].Length)
	j := i + 1
	for ; j < len(es) && filter.want(es[j]) && es[j].Offset == es[j-1].end(); j++ {
		if data+int64(es[j].Length) > chunk {
			break
		}
		data += int64(es[j].Length)
	}
	return j
}

// read reads the contiguous batches run with one ReadAt and verifies
// them; it returns them and their data bytes.
func (r *fileReader) read(run []entry) ([]*rsspb.Batch, int64, error) {
	start, end := run[0].Offset, run[len(run)-1].end()
	buf := make([]byte, end-start)
	n, err := r.file.ReadAt(buf, start)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("reading %s at %d: %w", r.path, start, err)
	}
	bs := make([]*rsspb.Batch, 0, len(run))
	var data int64
	for _, e := range run {
		at := e.Offset - start
		if at+headerSize+int64(e.Length) > int64(n) {
			return nil, 0, r.corrupt(e, fmt.Sprintf("the file ends at %d, before the batch's end at %d", start+int64(n), e.end()))
		}
		if why := checkHeader(buf[at:at+headerSize], e); why != "" {
			return nil, 0, r.corrupt(e, why)
		}
		d := buf[at+headerSize : at+headerSize+int64(e.Length)]
		if c := checksum(d); c != e.CRC {
			return nil, 0, r.corrupt(e, fmt.Sprintf("data has crc32c %#08x, index says %#08x (map %d attempt %d seq %d)", c, e.CRC, e.Map, e.Attempt, e.Seq))
		}
		bs = append(bs, &rsspb.Batch{ShuffleId: r.k.shuffle, Partition: r.k.partition, Epoch: r.k.epoch,
			MapIndex: e.Map, Attempt: e.Attempt, Seq: e.Seq, Crc32C: e.CRC, Data: d})
		data += int64(e.Length)
	}
	return bs, data, nil
}

func (r *fileReader) corrupt(e entry, why string) error {
	err := &CorruptError{App: r.k.app, Shuffle: r.k.shuffle, Partition: r.k.partition, Epoch: r.k.epoch,
		Offset: e.Offset, Path: r.path, Reason: why}
	r.w.log.Error("corrupt batch", "err", err)
	return err
}
