package grpctransport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"basalt/raft"
	"basalt/raft/transportpb"
)

// Redial backoff bounds.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// peer is the outbound side towards one host: a bounded queue filled by
// Send and one goroutine (run) that owns the connection and the Batch
// stream.
type peer struct {
	t     *Transport
	host  uint64
	log   *slog.Logger
	queue chan raft.Envelope

	// carry is an encoded message taken from queue that did not fit in the
	// previous batch. Owned by the run goroutine.
	carry *transportpb.RaftMessage
}

func newPeer(t *Transport, host uint64) *peer {
	return &peer{
		t:     t,
		host:  host,
		log:   t.log.With("peer", host),
		queue: make(chan raft.Envelope, t.cfg.QueueSize),
	}
}

// enqueue queues env without blocking, dropping it if the queue is full.
func (p *peer) enqueue(env raft.Envelope) {
	select {
	case p.queue <- env:
	default:
		p.t.metrics.drop(dropQueueFull, 1)
	}
}

// run waits for messages and streams them to the peer until ctx is done,
// redialing with backoff after each failure. The backoff resets after a
// session that lasted longer than maxBackoff.
func (p *peer) run(ctx context.Context) {
	backoff := minBackoff
	for p.wait(ctx, nil) {
		start := time.Now()
		err := p.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > maxBackoff {
			backoff = minBackoff
		}
		p.logFailure(err, backoff)
		p.dropQueued()
		p.t.unreachable(p.host)
		if !p.sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// logFailure logs a failed session: at Warn the first time, at Debug while
// the peer stays unreachable.
func (p *peer) logFailure(err error, backoff time.Duration) {
	level := slog.LevelWarn
	if backoff > minBackoff {
		level = slog.LevelDebug
	}
	p.log.Log(context.Background(), level, "raft transport: peer stream failed", "err", err, "backoff", backoff)
}

// session dials the peer, opens a Batch stream and sends batches until the
// stream fails or ctx is done.
func (p *peer) session(ctx context.Context) error {
	cc, err := p.t.dial(ctx, p.host)
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := transportpb.NewRaftTransportClient(cc).Batch(ctx)
	if err != nil {
		return errorf("opening batch stream to host %d: %w", p.host, err)
	}
	r := startResponseReader(stream, p.log)
	err = p.sendBatches(ctx, stream, r.done)
	cancel()
	<-r.done
	if err == nil || errors.Is(err, io.EOF) {
		// The stream ended on the peer's side; the reader has the status.
		return r.err
	}
	return err
}

// batchStream is the client side of a Batch stream.
type batchStream interface {
	Send(*transportpb.MessageBatch) error
	Recv() (*transportpb.BatchResponse, error)
}

// sendBatches cuts and sends batches while messages arrive. It returns when
// a send fails, the response reader stops (done) or ctx is done.
func (p *peer) sendBatches(ctx context.Context, s batchStream, done <-chan struct{}) error {
	for p.wait(ctx, done) {
		b, size := p.cut()
		if len(b.Messages) == 0 {
			continue
		}
		if err := s.Send(b); err != nil {
			p.t.metrics.drop(dropUnreachable, len(b.Messages))
			return fmt.Errorf("sending batch to host %d: %w", p.host, err)
		}
		p.t.metrics.sent.Add(float64(len(b.Messages)))
		p.t.metrics.batches.Inc()
		p.t.metrics.bytes.Add(float64(size))
	}
	return ctx.Err()
}

// wait blocks until a message is ready to be cut (in carry), ctx is done or
// done is closed; it reports whether a message is ready.
func (p *peer) wait(ctx context.Context, done <-chan struct{}) bool {
	for p.carry == nil {
		select {
		case env := <-p.queue:
			p.carry = p.encode(env)
		case <-ctx.Done():
			return false
		case <-done:
			return false
		}
	}
	return true
}

// cut builds a batch from carry and everything queued, up to MaxBatchBytes,
// and returns it with its encoded size. A message that does not fit stays
// in carry for the next batch.
func (p *peer) cut() (*transportpb.MessageBatch, int) {
	b := &transportpb.MessageBatch{FromHost: p.t.cfg.HostID, ToHost: p.host}
	size := proto.Size(b)
	for rm := p.next(); rm != nil; rm = p.next() {
		n := framedSize(rm)
		if len(b.Messages) > 0 && size+n > p.t.cfg.MaxBatchBytes {
			p.carry = rm
			break
		}
		b.Messages = append(b.Messages, rm)
		size += n
	}
	return b, size
}

// next returns carry or the next queued message, encoded, without
// blocking; nil if there is none.
func (p *peer) next() *transportpb.RaftMessage {
	if rm := p.carry; rm != nil {
		p.carry = nil
		return rm
	}
	for {
		select {
		case env := <-p.queue:
			if rm := p.encode(env); rm != nil {
				return rm
			}
		default:
			return nil
		}
	}
}

// encode wraps env for a batch (the raft message is embedded and marshaled
// with the batch); it returns nil (and counts a drop) for a message without
// a body or too large to ever fit in a batch.
func (p *peer) encode(env raft.Envelope) *transportpb.RaftMessage {
	if env.Message == nil {
		p.t.metrics.drop(dropInvalid, 1)
		return nil
	}
	rm := &transportpb.RaftMessage{Group: env.Group, Message: env.Message}
	if n := framedSize(rm); n+batchOverhead > p.t.cfg.MaxBatchBytes {
		p.log.Warn("raft transport: message larger than MaxBatchBytes dropped",
			"group", env.Group, "bytes", n, "limit", p.t.cfg.MaxBatchBytes)
		p.t.metrics.drop(dropTooLarge, 1)
		return nil
	}
	return rm
}

// Encoding overheads, in bytes.
const (
	// batchOverhead bounds the MessageBatch fields other than messages.
	batchOverhead = 2 * (1 + binary.MaxVarintLen64)
	// chunkOverhead bounds a SnapshotChunk's framing around its data.
	chunkOverhead = 1 + binary.MaxVarintLen64
)

// framedSize is rm's encoded size inside a MessageBatch.
func framedSize(rm *transportpb.RaftMessage) int {
	return protowire.SizeTag(3) + protowire.SizeBytes(proto.Size(rm))
}

// dropQueued drops carry and everything queued.
func (p *peer) dropQueued() {
	n := 0
	if p.carry != nil {
		p.carry = nil
		n++
	}
	for ; ; n++ {
		select {
		case <-p.queue:
		default:
			p.t.metrics.drop(dropUnreachable, n)
			return
		}
	}
}

// sleep waits for d, dropping messages queued meanwhile (the peer is
// unreachable); it reports false if ctx is done first.
func (p *peer) sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-p.queue:
			p.t.metrics.drop(dropUnreachable, 1)
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// responseReader drains BatchResponses from a stream in its own goroutine.
// done is closed when the stream ends; err is then the reason.
type responseReader struct {
	done chan struct{}
	err  error
}

func startResponseReader(s batchStream, log *slog.Logger) *responseReader {
	r := &responseReader{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = readResponses(s, log)
	}()
	return r
}

// readResponses logs responses until the stream ends or reports a wrong
// host, which ends the session.
func readResponses(s batchStream, log *slog.Logger) error {
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return errorf("batch stream closed by peer")
		}
		if err != nil {
			return errorf("receiving batch response: %w", err)
		}
		if resp.GetWrongHost() {
			return fmt.Errorf("%w: %s", ErrWrongHost, resp.GetError())
		}
		log.Warn("raft transport: peer reported batch error", "err", resp.GetError())
	}
}
