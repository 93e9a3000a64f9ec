package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/rss/rsspb"
)

// Reader reads one partition of a committed shuffle: every record of the
// winning attempt of every map in its map range, each once. Next belongs
// to one goroutine.
type Reader struct {
	a                  *App
	shuffle, partition int32
	startMap, endMap   int32
	winners            []*rsspb.MapWinner // maps in range, with their attempt
	expected           map[int32]int32    // map -> batches of the winner here
	got                map[int32]int32    // map -> distinct batches read
	seen               map[batchKey]bool
	locs               []*rsspb.PartitionLocation // every epoch, ascending
	next               int                        // index into locs of the next epoch to open
	cur                *fetchStream
	records            []byte // framed records of the current batch
	pending            []*rsspb.Batch
	codecs             codecs
	ctx                context.Context
	// Bytes counts the record bytes returned so far.
	Bytes int64
}

type batchKey struct{ m, a, s int32 }

// fetchStream is the fetch of one epoch from one of its copies.
type fetchStream struct {
	loc     *rsspb.PartitionLocation
	replica bool // reading the replica
	stream  rsspb.Worker_FetchClient
	cancel  context.CancelFunc
	tries   int
	// bad holds the copies (false: primary, true: replica) that cannot
	// serve this epoch: NotFound or corrupt.
	bad      map[bool]error
	deadline time.Time
}

// NewReader opens partition of shuffle for the maps in [startMap, endMap)
// (endMap <= 0: all maps). The shuffle must be committed.
func (a *App) NewReader(ctx context.Context, shuffle, partition, startMap, endMap int) (*Reader, error) {
	st, err := a.master.GetShuffle(ctx, &rsspb.GetShuffleRequest{ShuffleId: int32(shuffle)})
	if err != nil {
		return nil, fmt.Errorf("getting shuffle %d: %w", shuffle, err)
	}
	if !st.GetCommitted() {
		return nil, fmt.Errorf("%w: shuffle %d", ErrNotCommitted, shuffle)
	}
	if endMap <= 0 || endMap > int(st.GetNumMaps()) {
		endMap = int(st.GetNumMaps())
	}
	r := &Reader{a: a, shuffle: int32(shuffle), partition: int32(partition), startMap: int32(startMap), endMap: int32(endMap),
		expected: map[int32]int32{}, got: map[int32]int32{}, seen: map[batchKey]bool{}, ctx: ctx}
	for _, w := range st.GetWinners() {
		if m := w.GetMapIndex(); m >= r.startMap && m < r.endMap {
			r.winners = append(r.winners, w)
			if int(partition) < len(w.GetBatches()) {
				r.expected[m] = w.GetBatches()[partition]
			}
		}
	}
	slices.SortFunc(r.winners, func(x, y *rsspb.MapWinner) int { return int(x.GetMapIndex() - y.GetMapIndex()) })
	if len(r.winners) != endMap-startMap {
		return nil, fmt.Errorf("%w: shuffle %d has %d finished maps in [%d, %d)", ErrDataLost, shuffle, len(r.winners), startMap, endMap)
	}
	for _, l := range st.GetLocations() {
		if l.GetPartition() == int32(partition) {
			r.locs = append(r.locs, l)
		}
	}
	slices.SortFunc(r.locs, func(x, y *rsspb.PartitionLocation) int { return int(x.GetEpoch() - y.GetEpoch()) })
	return r, nil
}

// Next returns the next record, or io.EOF after the last one. An error
// other than io.EOF means data is missing or corrupt on every copy: the
// partition cannot be read (a Spark plugin reports a fetch failure).
func (r *Reader) Next() ([]byte, error) {
	for len(r.records) == 0 {
		if err := r.advance(); err != nil {
			return nil, err
		}
	}
	rec, rest, err := nextRecord(r.records)
	if err != nil {
		return nil, r.lost(err)
	}
	r.records = rest
	r.Bytes += int64(len(rec))
	return rec, nil
}

// advance loads the next new batch of a winning attempt into r.records.
func (r *Reader) advance() error {
	for len(r.pending) == 0 {
		if err := r.fill(); err != nil {
			return err
		}
	}
	b := r.pending[0]
	r.pending = r.pending[1:]
	k := batchKey{b.GetMapIndex(), b.GetAttempt(), b.GetSeq()}
	if r.seen[k] || !r.wins(b) {
		return nil // a re-pushed duplicate, or a losing attempt
	}
	if crc(b.GetData()) != b.GetCrc32C() {
		return r.failCopy(fmt.Errorf("%w: CRC mismatch in map %d attempt %d batch %d", ErrDataLost, k.m, k.a, k.s))
	}
	recs, err := r.codecs.decode(b.GetData())
	if err != nil {
		return r.lost(err)
	}
	r.seen[k] = true
	r.got[k.m]++
	r.records = recs
	return nil
}

// wins reports whether b belongs to its map's winning attempt in range.
func (r *Reader) wins(b *rsspb.Batch) bool {
	if b.GetMapIndex() < r.startMap || b.GetMapIndex() >= r.endMap {
		return false
	}
	i, ok := slices.BinarySearchFunc(r.winners, b.GetMapIndex(), func(w *rsspb.MapWinner, m int32) int { return int(w.GetMapIndex() - m) })
	return ok && r.winners[i].GetAttempt() == b.GetAttempt()
}

// fill receives the next response of the current fetch, opening the next
// epoch (or the other copy) when needed; io.EOF after the last epoch once
// the batch counts check out.
func (r *Reader) fill() error {
	if r.cur == nil {
		if r.next >= len(r.locs) {
			return r.finish()
		}
		r.cur = &fetchStream{loc: r.locs[r.next]}
		r.next++
		if err := r.open(); err != nil {
			return err
		}
	}
	resp, err := r.cur.stream.Recv()
	if errors.Is(err, io.EOF) {
		r.cur.cancel()
		r.cur = nil
		return nil
	}
	if err != nil {
		return r.failCopy(err)
	}
	r.pending = resp.GetBatches()
	return nil
}

// open starts fetching the current epoch from its current copy.
func (r *Reader) open() error {
	f := r.cur
	ref := f.loc.GetPrimary()
	if f.replica {
		ref = f.loc.GetReplica()
	}
	wc, err := r.a.worker(ref.GetAddr())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	st, err := wc.Fetch(ctx, &rsspb.FetchRequest{ShuffleId: r.shuffle, Partition: r.partition, Epoch: f.loc.GetEpoch(),
		Winners: r.winners, StartMap: r.startMap, EndMap: r.endMap})
	if err != nil {
		cancel()
		return r.failCopy(err)
	}
	f.stream, f.cancel = st, cancel
	return nil
}

// failCopy gives up on the copy being read and switches to the other one
// (batches already read are skipped by the seen set). A copy that does not
// have the epoch (NotFound) or whose data is corrupt (DataLoss, or a CRC
// mismatch seen here) is not asked again; other failures (a dead or
// restarting worker) alternate between the copies with backoff until the
// retry deadline.
func (r *Reader) failCopy(cause error) error {
	f := r.cur
	if f.cancel != nil {
		f.cancel()
	}
	r.pending, f.stream, f.cancel = nil, nil, nil
	if f.deadline.IsZero() {
		f.deadline = time.Now().Add(r.a.cfg.RetryDeadline)
	}
	if c := status.Code(cause); c == codes.NotFound || c == codes.DataLoss || errors.Is(cause, ErrDataLost) {
		if f.bad == nil {
			f.bad = map[bool]error{}
		}
		f.bad[f.replica] = cause
	}
	copies := []bool{false}
	if f.loc.GetReplica() != nil {
		copies = append(copies, true)
	}
	var usable []bool
	for _, c := range copies {
		if f.bad[c] == nil {
			usable = append(usable, c)
		}
	}
	if len(usable) == 0 {
		if r.allMissing(f, copies) {
			r.cur = nil // an empty epoch; the count check still applies
			return nil
		}
		return r.lost(cause)
	}
	if time.Now().After(f.deadline) {
		return r.lost(cause)
	}
	r.a.cfg.Logger.Info("rss: fetch failed; trying another copy", "shuffle", r.shuffle, "partition", r.partition, "epoch", f.loc.GetEpoch(), "err", cause)
	f.tries++
	f.replica = usable[f.tries%len(usable)]
	if f.tries >= 2 {
		backoff(r.ctx, f.tries-2)
	}
	return r.open()
}

// allMissing reports whether every copy answered NotFound: a location
// that got no batch (a writer moved on before pushing there) has no file.
func (r *Reader) allMissing(f *fetchStream, copies []bool) bool {
	for _, c := range copies {
		if status.Code(f.bad[c]) != codes.NotFound {
			return false
		}
	}
	return true
}

// finish checks that exactly the winners' batches were read.
func (r *Reader) finish() error {
	for _, w := range r.winners {
		m := w.GetMapIndex()
		if r.got[m] != r.expected[m] {
			return r.lost(fmt.Errorf("%w: map %d attempt %d: read %d of %d batches", ErrDataLost, m, w.GetAttempt(), r.got[m], r.expected[m]))
		}
	}
	return io.EOF
}

// lost wraps err with the partition it makes unreadable.
func (r *Reader) lost(err error) error {
	if !errors.Is(err, ErrDataLost) {
		err = fmt.Errorf("%w: %w", ErrDataLost, err)
	}
	return &PartitionError{Shuffle: int(r.shuffle), Partition: int(r.partition), Err: err}
}

// PartitionError is a partition that cannot be read: data is missing or
// corrupt on every copy. It wraps ErrDataLost; the Spark plugin turns it
// into a fetch failure for this partition.
type PartitionError struct {
	Shuffle, Partition int
	Err                error
}

func (e *PartitionError) Error() string {
	return fmt.Sprintf("reading shuffle %d partition %d: %v", e.Shuffle, e.Partition, e.Err)
}

func (e *PartitionError) Unwrap() error { return e.Err }

// Close stops the reader.
func (r *Reader) Close() error {
	if r.cur != nil && r.cur.cancel != nil {
		r.cur.cancel()
	}
	r.codecs.close()
	return nil
}
