package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"

	"basalt/rss/rsspb"
)

// Stream kinds, the "stream" label of the pushed metrics.
const (
	kindPush      = "push"
	kindReplicate = "replicate"
)

// waiter follows one accepted batch until it is written here and, when
// it was forwarded, acknowledged by the replica. Its memory reservation
// is released when both are done (or failed).
type waiter struct {
	key   partKey
	batch *rsspb.Batch
	app   string
	size  int64 // reserved in the budget for app
	mem   *budget
	parts atomic.Int32 // outstanding: the local write, the replica's ack
	done  chan struct{}

	mu  sync.Mutex
	err error // the first failure
}

func newWaiter(k partKey, b *rsspb.Batch, size int64, mem *budget, forwarded bool) *waiter {
	wt := &waiter{key: k, batch: b, app: k.app, size: size, mem: mem, done: make(chan struct{})}
	wt.parts.Store(1)
	if forwarded {
		wt.parts.Store(2)
	}
	return wt
}

// complete reports one part done (err nil) or failed.
func (wt *waiter) complete(err error) {
	if err != nil {
		wt.mu.Lock()
		if wt.err == nil {
			wt.err = err
		}
		wt.mu.Unlock()
	}
	if wt.parts.Add(-1) == 0 {
		wt.mem.release(wt.app, wt.size)
		close(wt.done)
	}
}

func (wt *waiter) result() error {
	wt.mu.Lock()
	defer wt.mu.Unlock()
	return wt.err
}

// ackQueue holds a stream's accepted batches in arrival order until they
// are acknowledged. It is closed when no more will come, with the reason
// (nil: the client finished sending).
type ackQueue struct {
	ready chan struct{} // signalled (capacity 1) on push and close

	mu     sync.Mutex
	items  []*waiter
	closed bool
	err    error
}

func newAckQueue() *ackQueue { return &ackQueue{ready: make(chan struct{}, 1)} }

func (q *ackQueue) push(wt *waiter) {
	q.mu.Lock()
	q.items = append(q.items, wt)
	q.mu.Unlock()
	q.signal()
}

// close closes the queue; the first reason wins.
func (q *ackQueue) close(err error) {
	q.mu.Lock()
	if !q.closed {
		q.closed, q.err = true, err
	}
	q.mu.Unlock()
	q.signal()
}

func (q *ackQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take removes the oldest waiter. With none, it reports whether the queue
// is closed and why.
func (q *ackQueue) take() (wt *waiter, closed bool, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return nil, q.closed, q.err
	}
	wt = q.items[0]
	q.items[0] = nil // the backing array must not keep the batch alive
	q.items = q.items[1:]
	return wt, false, nil
}

// headDone reports whether the oldest waiter is already done and
// succeeded, so the acknowledgement of the ones before it can wait and
// cover it too.
func (q *ackQueue) headDone() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return false
	}
	select {
	case <-q.items[0].done:
		return q.items[0].result() == nil
	default:
		return false
	}
}

// pushStream is one Push (forward: the primary) or Replicate stream.
type pushStream struct {
	w       *Worker
	app     string
	token   string // forwarded to replicas
	kind    string
	forward bool
	stream  grpc.BidiStreamingServer[rsspb.PushRequest, rsspb.PushResponse]
	queue   *ackQueue

	// replicas are the Replicate streams to each replica address; only
	// the receiving goroutine uses them.
	replicas map[string]*replicaStream

	// mu is held while a request is handled; stop takes it so that no
	// request is half-handled when the stream stops reading.
	mu      sync.Mutex
	stopped bool
}

// serve runs a Push (forward) or Replicate stream: a goroutine receives
// and stores batches while this one acknowledges them in order. It
// returns nil when the client closed its side and everything it sent was
// acknowledged, or the first error (after acknowledging every batch
// before the failed one).
func (w *Worker) serve(stream grpc.BidiStreamingServer[rsspb.PushRequest, rsspb.PushResponse], forward bool) error {
	app, token, err := callApp(stream.Context())
	if err != nil {
		return err
	}
	if err := w.startStream(); err != nil {
		return err
	}
	defer w.endStream()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ps := &pushStream{w: w, app: app, token: token, kind: kindReplicate, forward: forward, stream: stream,
		queue: newAckQueue(), replicas: map[string]*replicaStream{}}
	if forward {
		ps.kind = kindPush
	}
	received := make(chan struct{})
	if err := w.spawn(func() { defer close(received); ps.receive(ctx) }); err != nil {
		return err
	}
	err = ps.acknowledge(ctx)
	if err == nil {
		<-received // the client finished: let the replica streams end cleanly
	}
	return err
}

// receive reads requests until the client closes its side, the stream
// fails, or a request fails; then it closes the replica streams.
func (ps *pushStream) receive(ctx context.Context) {
	defer ps.closeReplicas()
	for {
		req, err := ps.stream.Recv()
		if errors.Is(err, io.EOF) {
			ps.queue.close(nil)
			return
		}
		if err != nil {
			ps.queue.close(err)
			return
		}
		if !ps.handle(ctx, req) {
			return
		}
	}
}

// handle admits, forwards and stores one request's batches. On the first
// batch that fails it closes the queue with the error (the batches
// before it are still acknowledged) and returns false.
func (ps *pushStream) handle(ctx context.Context, req *rsspb.PushRequest) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.stopped {
		return false
	}
	addr := ""
	if ps.forward {
		addr = req.GetReplica().GetAddr()
	}
	ws, err := ps.admit(req.GetBatches(), addr != "")
	if addr != "" && len(ws) > 0 {
		if rerr := ps.forwardTo(ctx, addr, ws); rerr != nil {
			for _, wt := range ws {
				wt.complete(rerr) // the local part: never stored
			}
			ps.queue.close(rerr)
			return false
		}
	}
	if serr := ps.store(ws); err == nil {
		err = serr
	}
	if err != nil {
		ps.queue.close(err)
		return false
	}
	return true
}

// admit checks each batch and reserves its memory, stopping at the first
// that fails.
func (ps *pushStream) admit(bs []*rsspb.Batch, forwarded bool) ([]*waiter, error) {
	ws := make([]*waiter, 0, len(bs))
	for _, b := range bs {
		k, err := ps.check(b)
		size := int64(len(b.GetData())) + headerSize
		if err == nil {
			err = ps.w.mem.acquire(ps.app, size)
		}
		if err != nil {
			ps.w.countRejected(err)
			return ws, err
		}
		ws = append(ws, newWaiter(k, b, size, ps.w.mem, forwarded))
	}
	return ws, nil
}

// check validates a batch and its CRC, and that its partition takes
// pushes.
func (ps *pushStream) check(b *rsspb.Batch) (partKey, error) {
	if b == nil {
		return partKey{}, fmt.Errorf("%w: empty batch", ErrInvalidArgument)
	}
	k := partKey{shuffleKey{ps.app, b.GetShuffleId()}, b.GetPartition(), b.GetEpoch()}
	n := int64(len(b.GetData())) + headerSize
	switch {
	case k.shuffle < 0 || k.partition < 0 || k.epoch < 0 || b.GetMapIndex() < 0 || b.GetAttempt() < 0 || b.GetSeq() < 0:
		return k, fmt.Errorf("%w: batch %v map %d attempt %d seq %d: negative field", ErrInvalidArgument, k, b.GetMapIndex(), b.GetAttempt(), b.GetSeq())
	case n > ps.w.cfg.AppMemoryLimitBytes || len(b.GetData()) > math.MaxUint32:
		return k, fmt.Errorf("%w: batch of %d bytes for %v exceeds the worker's per-application memory limit of %d bytes", ErrInvalidArgument, n, k, ps.w.cfg.AppMemoryLimitBytes)
	}
	if c := checksum(b.GetData()); c != b.GetCrc32C() {
		return k, fmt.Errorf("%w: pushed batch of %v map %d attempt %d seq %d: crc32c says %#08x, data has %#08x",
			ErrChecksum, k, b.GetMapIndex(), b.GetAttempt(), b.GetSeq(), b.GetCrc32C(), c)
	}
	return k, ps.w.writable(k)
}

// forwardTo sends the batches to the replica at addr, opening the
// Replicate stream on first use. The replica's acknowledgements complete
// the waiters' replica parts; an error here (the stream cannot be opened)
// has already failed them.
func (ps *pushStream) forwardTo(ctx context.Context, addr string, ws []*waiter) error {
	rs := ps.replicas[addr]
	if rs == nil {
		var err error
		if rs, err = openReplica(ctx, ps.w, addr, ps.app, ps.token); err != nil {
			for _, wt := range ws {
				wt.complete(err)
			}
			return err
		}
		ps.replicas[addr] = rs
	}
	rs.send(ws)
	return nil
}

// store appends the batches to their partition files and queues them for
// acknowledgement; files whose buffer filled up are written before it
// returns. On an append that fails, that batch and the rest fail.
func (ps *pushStream) store(ws []*waiter) error {
	var full []*partFile
	defer func() {
		for _, f := range full {
			f.write()
		}
	}()
	for i, wt := range ws {
		f, err := ps.w.fileFor(wt.key)
		needWrite := false
		if err == nil {
			needWrite, err = f.append(wt.batch, wt.complete)
		}
		if err != nil {
			ps.w.countRejected(err)
			for _, rest := range ws[i:] {
				rest.complete(err)
			}
			return err
		}
		if needWrite && !slices.Contains(full, f) {
			full = append(full, f)
		}
		ps.queue.push(wt)
	}
	return nil
}

// stop makes the stream stop reading requests (Drain): the request being
// handled finishes first.
func (ps *pushStream) stop() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.stopped = true
	ps.queue.close(ErrDraining)
}

// closeReplicas ends the Replicate streams, waiting for their last
// acknowledgements.
func (ps *pushStream) closeReplicas() {
	for _, rs := range ps.replicas {
		rs.closeSend()
	}
	for _, rs := range ps.replicas {
		<-rs.done
	}
}

// acknowledge sends cumulative acknowledgements, in order, as batches
// complete. It returns when the queue is closed and empty (with the
// queue's reason), at the first failed batch (with its error), or when
// the stream or the worker ends.
func (ps *pushStream) acknowledge(ctx context.Context) error {
	var acked int64
	draining := ps.w.draining
	for {
		select {
		case <-draining:
			ps.stop()
			draining = nil
		default:
		}
		wt, closed, err := ps.queue.take()
		if wt == nil && closed {
			return err
		}
		if wt == nil {
			if err := ps.wait(ctx, ps.queue.ready, draining); err != nil {
				return err
			}
			continue
		}
		if err := ps.wait(ctx, wt.done, nil); err != nil {
			return err
		}
		if err := wt.result(); err != nil {
			return err
		}
		acked++
		ps.w.metrics.pushedBytes.WithLabelValues(ps.kind).Add(float64(len(wt.batch.GetData())))
		ps.w.metrics.pushedBatches.WithLabelValues(ps.kind).Inc()
		if !ps.queue.headDone() {
			if err := ps.stream.Send(&rsspb.PushResponse{Acked: acked}); err != nil {
				return err
			}
		}
	}
}

// wait waits for c, or for draining (returning nil so the caller
// re-checks), or fails when the stream or the worker ends.
func (ps *pushStream) wait(ctx context.Context, c, draining <-chan struct{}) error {
	select {
	case <-c:
		return nil
	case <-draining:
		return nil
	case <-ps.w.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// countRejected counts a refused batch by the reason err gives.
func (w *Worker) countRejected(err error) {
	reason := ""
	switch {
	case errors.Is(err, ErrMemoryLimit):
		reason = rejectMemory
	case errors.Is(err, ErrAppMemoryLimit):
		reason = rejectAppMemory
	case errors.Is(err, ErrDiskFull):
		reason = rejectDiskFull
	case errors.Is(err, ErrChecksum):
		reason = rejectCRC
	case errors.Is(err, ErrCommitted):
		reason = rejectCommitted
	case errors.Is(err, ErrInvalidArgument):
		reason = rejectInvalid
	default:
		return
	}
	w.metrics.rejected.WithLabelValues(reason).Inc()
}
