package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"basalt/rss/rsspb"
)

// Writer pushes the records of one map attempt. Write and Close must be
// called from one goroutine.
type Writer struct {
	a                          *App
	shuffle, mapIndex, attempt int32
	locs                       []*rsspb.PartitionLocation // current location per partition
	bufs                       [][]byte
	seqs                       []int32
	codecs                     codecs
	ctx                        context.Context
	cancel                     context.CancelFunc
	streams                    map[string]*pushStream
	notify                     chan struct{} // signalled on every ack and failure
	failStreak                 atomic.Int64  // consecutive failed push rounds
	mu                         sync.Mutex    // guards inflight
	inflight                   int
	// Bytes counts the record bytes written (before framing/compression).
	Bytes int64
}

// pending is a batch sent but not acknowledged.
type pending struct {
	b    *rsspb.Batch
	size int
}

// pushStream is one Push stream to a primary worker.
type pushStream struct {
	addr   string
	stream rsspb.Worker_PushClient
	mu     sync.Mutex
	sent   []*pending // unacknowledged, in send order
	acked  int64
	failed error
	done   chan struct{}
}

// NewWriter starts map attempt (mapIndex, attempt) of shuffle. The shuffle
// must be registered.
func (a *App) NewWriter(ctx context.Context, shuffle, mapIndex, attempt int) (*Writer, error) {
	st, err := a.master.GetShuffle(ctx, &rsspb.GetShuffleRequest{ShuffleId: int32(shuffle)})
	if err != nil {
		return nil, fmt.Errorf("getting shuffle %d: %w", shuffle, err)
	}
	n := int(st.GetNumPartitions())
	w := &Writer{a: a, shuffle: int32(shuffle), mapIndex: int32(mapIndex), attempt: int32(attempt),
		locs: make([]*rsspb.PartitionLocation, n), bufs: make([][]byte, n), seqs: make([]int32, n),
		streams: map[string]*pushStream{}, notify: make(chan struct{}, 1)}
	for _, l := range st.GetLocations() {
		if p := l.GetPartition(); p >= 0 && int(p) < n && (w.locs[p] == nil || l.GetEpoch() > w.locs[p].GetEpoch()) {
			w.locs[p] = l
		}
	}
	w.ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return w, nil
}

// Write adds one record to partition p.
func (w *Writer) Write(p int, rec []byte) error {
	if p < 0 || p >= len(w.bufs) {
		return fmt.Errorf("%w: partition %d of %d", ErrConfig, p, len(w.bufs))
	}
	w.bufs[p] = appendRecord(w.bufs[p], rec)
	w.Bytes += int64(len(rec))
	if len(w.bufs[p]) >= w.a.cfg.BatchBytes {
		return w.flushPartition(p)
	}
	return nil
}

// flushPartition pushes partition p's buffered records as one batch.
func (w *Writer) flushPartition(p int) error {
	data, err := w.codecs.encode(w.a.cfg.Codec, w.bufs[p])
	if err != nil {
		return err
	}
	w.bufs[p] = w.bufs[p][:0]
	b := &rsspb.Batch{ShuffleId: w.shuffle, Partition: int32(p), MapIndex: w.mapIndex, Attempt: w.attempt,
		Seq: w.seqs[p], Crc32C: crc(data), Data: data}
	w.seqs[p]++
	return w.send(&pending{b: b, size: len(data)})
}

// send pushes one batch to its partition's current primary, waiting while
// too many bytes are unacknowledged and moving failed batches on.
func (w *Writer) send(pb *pending) error {
	deadline := time.Now().Add(w.a.cfg.RetryDeadline)
	for {
		if err := w.recover(deadline); err != nil {
			return err
		}
		if w.inflightBytes()+pb.size <= w.a.cfg.MaxInFlightBytes || w.inflightBytes() == 0 {
			break
		}
		if err := w.wait(deadline); err != nil {
			return err
		}
	}
	loc := w.locs[pb.b.GetPartition()]
	if loc == nil {
		return fmt.Errorf("%w: partition %d has no location", ErrConfig, pb.b.GetPartition())
	}
	pb.b.Epoch = loc.GetEpoch()
	s, err := w.stream(loc.GetPrimary().GetAddr())
	if err != nil {
		return err
	}
	w.addInflight(pb.size)
	s.mu.Lock()
	s.sent = append(s.sent, pb)
	failed := s.failed
	s.mu.Unlock()
	if failed == nil {
		if err := s.stream.Send(&rsspb.PushRequest{Replica: loc.GetReplica(), Batches: []*rsspb.Batch{pb.b}}); err != nil {
			s.fail(err, w.notify) // Recv reports the real status
		}
	}
	return nil
}

// stream returns the Push stream to addr, opening it if needed.
func (w *Writer) stream(addr string) (*pushStream, error) {
	if s := w.streams[addr]; s != nil {
		return s, nil
	}
	wc, err := w.a.worker(addr)
	if err != nil {
		return nil, err
	}
	s := &pushStream{addr: addr, done: make(chan struct{})}
	w.streams[addr] = s
	st, err := wc.Push(w.ctx)
	if err != nil { // a dead worker: recover moves the batches on
		s.failed = fmt.Errorf("opening a push stream to %s: %w", addr, err)
		close(s.done)
		return s, nil
	}
	s.stream = st
	go s.recv(w)
	return s, nil
}

// recv applies acknowledgements until the stream ends.
func (s *pushStream) recv(w *Writer) {
	defer close(s.done)
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.fail(err, w.notify)
			}
			return
		}
		s.mu.Lock()
		n := int(resp.GetAcked() - s.acked)
		n = min(max(n, 0), len(s.sent))
		freed := 0
		for _, p := range s.sent[:n] {
			freed += p.size
		}
		s.sent, s.acked = s.sent[n:], resp.GetAcked()
		s.mu.Unlock()
		w.addInflight(-freed)
		if n > 0 {
			w.failStreak.Store(0)
		}
		signal(w.notify)
	}
}

func (s *pushStream) fail(err error, notify chan struct{}) {
	s.mu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.mu.Unlock()
	signal(notify)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (w *Writer) addInflight(n int) {
	w.mu.Lock()
	w.inflight += n
	w.mu.Unlock()
}

func (w *Writer) inflightBytes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inflight
}

// wait blocks until an ack or failure arrives, or the deadline.
func (w *Writer) wait(deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w.notify:
		return nil
	case <-t.C:
		return fmt.Errorf("rss/client: pushes of map %d attempt %d not acknowledged before the retry deadline", w.mapIndex, w.attempt)
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// recover moves the unacknowledged batches of failed streams to new
// locations (Revive) and pushes them again.
func (w *Writer) recover(deadline time.Time) error {
	for {
		failed := w.takeFailed()
		if len(failed) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("rss/client: push of map %d attempt %d kept failing: %w", w.mapIndex, w.attempt, failed[0].err)
		}
		// The backoff grows with consecutive failures across calls and
		// resets when a worker acknowledges something, so a location that
		// keeps refusing (a full or overloaded worker) is not hammered.
		backoff(w.ctx, int(w.failStreak.Add(1))-1)
		for _, f := range failed {
			w.a.cfg.Logger.Info("rss: push failed; moving on", "worker", f.addr, "batches", len(f.batches), "err", f.err)
			for _, pb := range f.batches {
				if err := w.revive(pb.b); err != nil {
					return err
				}
			}
			for _, pb := range f.batches {
				if err := w.send(pb); err != nil {
					return err
				}
			}
		}
	}
}

type failedStream struct {
	addr    string
	err     error
	batches []*pending
}

// takeFailed removes the failed streams and returns their unacked batches.
func (w *Writer) takeFailed() []failedStream {
	var out []failedStream
	for addr, s := range w.streams {
		s.mu.Lock()
		err, batches := s.failed, s.sent
		if err != nil {
			s.sent = nil
		}
		s.mu.Unlock()
		if err == nil {
			continue
		}
		delete(w.streams, addr)
		freed := 0
		for _, p := range batches {
			freed += p.size
		}
		w.addInflight(-freed)
		out = append(out, failedStream{addr: addr, err: err, batches: batches})
	}
	return out
}

// revive makes sure the batch's partition has a location newer than the
// epoch the batch failed in.
func (w *Writer) revive(b *rsspb.Batch) error {
	p := b.GetPartition()
	if cur := w.locs[p]; cur != nil && cur.GetEpoch() > b.GetEpoch() {
		return nil
	}
	loc, err := w.a.master.Revive(w.ctx, &rsspb.ReviveRequest{ShuffleId: w.shuffle, Partition: p, FailedEpoch: b.GetEpoch()})
	if err != nil {
		return fmt.Errorf("reviving partition %d of shuffle %d: %w", p, w.shuffle, err)
	}
	w.locs[p] = loc
	return nil
}

// backoff sleeps a jittered, growing interval (50 ms doubling to 2 s).
func backoff(ctx context.Context, attempt int) {
	d := min(50*time.Millisecond<<min(attempt, 6), 2*time.Second)
	d = d/2 + rand.N(d/2+1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// MapEnd is what the master answered to the map attempt's end.
type MapEnd struct {
	// Won is true when this attempt is the one readers will read.
	Won bool
	// WinningAttempt is the attempt that won.
	WinningAttempt int
	// Batches[p] is the number of batches pushed to partition p.
	Batches []int32
}

// Close pushes what is buffered, waits for every batch to be acknowledged
// by its primary and replica, and reports the attempt's end to the master.
func (w *Writer) Close(ctx context.Context) (MapEnd, error) {
	defer w.release()
	for p := range w.bufs {
		if len(w.bufs[p]) > 0 {
			if err := w.flushPartition(p); err != nil {
				return MapEnd{}, err
			}
		}
	}
	if err := w.drain(); err != nil {
		return MapEnd{}, err
	}
	resp, err := w.a.master.MapEnd(ctx, &rsspb.MapEndRequest{ShuffleId: w.shuffle, MapIndex: w.mapIndex, Attempt: w.attempt, Batches: w.seqs})
	if err != nil {
		return MapEnd{}, fmt.Errorf("reporting the end of map %d attempt %d: %w", w.mapIndex, w.attempt, err)
	}
	return MapEnd{Won: resp.GetWon(), WinningAttempt: int(resp.GetWinningAttempt()), Batches: w.seqs}, nil
}

// drain waits until nothing is unacknowledged, moving failed batches on.
func (w *Writer) drain() error {
	deadline := time.Now().Add(w.a.cfg.RetryDeadline)
	for {
		if err := w.recover(deadline); err != nil {
			return err
		}
		if w.inflightBytes() == 0 && w.allAcked() {
			return nil
		}
		if err := w.wait(deadline); err != nil {
			return err
		}
	}
}

func (w *Writer) allAcked() bool {
	for _, s := range w.streams {
		s.mu.Lock()
		n := len(s.sent)
		s.mu.Unlock()
		if n > 0 {
			return false
		}
	}
	return true
}

// Abort stops the attempt without reporting its end (its batches are never
// read, because another attempt will win).
func (w *Writer) Abort() {
	w.cancel()
	w.release()
}

// release half-closes the streams, waits (up to 5 s) for the workers to
// end them, then cancels what is left.
func (w *Writer) release() {
	for _, s := range w.streams {
		if s.stream != nil {
			_ = s.stream.CloseSend()
		}
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for _, s := range w.streams {
		select {
		case <-s.done:
		case <-t.C:
			w.cancel()
			<-s.done
		}
	}
	w.cancel()
	w.streams = map[string]*pushStream{}
	w.codecs.close()
}
