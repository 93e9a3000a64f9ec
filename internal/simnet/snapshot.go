package simnet

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"basalt/raft"
)

// snapshotChunk is how many body bytes travel between link checks.
const snapshotChunk = 32 << 10

// errReceiverDone closes the pipe once the receiving handler returned.
var errReceiverDone = errors.New("simnet: snapshot receiver returned")

// SendSnapshot implements raft.Transport. The snapshot is subject to the
// same faults as messages (one drop draw; it fails with ErrUnreachable or
// ErrDropped), then body is streamed through an io.Pipe to the
// destination's HandleSnapshot, which runs on a goroutine of its own with a
// context cancelled when ctx is. If the link goes down midway, or body
// fails, the handler's reader returns an error (never io.EOF). A handler
// error is returned wrapping ErrSnapshotRejected.
func (e *Endpoint) SendSnapshot(ctx context.Context, env raft.Envelope, body io.Reader) error {
	to := env.Message.GetTo()
	if err := e.sendSnapshot(ctx, to, env, body); err != nil {
		e.net.countSnapshot(true)
		return fmt.Errorf("simnet: sending snapshot from host %d to host %d: %w", e.host, to, err)
	}
	e.net.countSnapshot(false)
	return nil
}

func (e *Endpoint) sendSnapshot(ctx context.Context, to uint64, env raft.Envelope, body io.Reader) error {
	dst, err := e.net.admitSnapshot(e.host, to)
	if err != nil {
		return err
	}
	h := dst.loadHandler()
	if h == nil {
		return ErrNoHandler
	}
	copied, err := snapshotEnvelope(env)
	if err != nil {
		return err
	}
	return e.net.stream(ctx, e.host, to, h, copied, body)
}

// admitSnapshot draws the snapshot's fate and returns its destination.
func (n *Network) admitSnapshot(from, to uint64) (*Endpoint, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d := n.decideLocked()
	switch {
	case n.mu.closed:
		return nil, ErrClosed
	case !n.linkUpLocked(from, to):
		return nil, ErrUnreachable
	case d.drop:
		return nil, ErrDropped
	}
	return n.mu.endpoints[to], nil
}

func (n *Network) countSnapshot(failed bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.stats.Snapshots++
	if failed {
		n.mu.stats.SnapshotsFailed++
	}
}

// snapshotEnvelope deep-copies env without Snapshot.Data.
func snapshotEnvelope(env raft.Envelope) (raft.Envelope, error) {
	data, err := proto.Marshal(env.Message)
	if err != nil {
		return raft.Envelope{}, fmt.Errorf("marshaling snapshot message: %w", err)
	}
	m := new(raftpb.Message)
	if err := proto.Unmarshal(data, m); err != nil {
		return raft.Envelope{}, fmt.Errorf("unmarshaling snapshot message: %w", err)
	}
	if m.Snapshot != nil {
		m.Snapshot.Data = nil
	}
	return raft.Envelope{Group: env.Group, Message: m}, nil
}

// stream runs the handler on its own goroutine and pumps body into it.
func (n *Network) stream(ctx context.Context, from, to uint64, h raft.Handler, env raft.Envelope, body io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.ctx, cancel)()
	pr, pw := io.Pipe()
	defer context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })()
	result := make(chan error, 1)
	if !n.spawn(func() { result <- receive(ctx, h, env, pr) }) {
		return ErrClosed
	}
	err := n.pump(from, to, pw, body)
	switch {
	case ctx.Err() != nil:
		return n.ctxErr(ctx)
	case err != nil && !errors.Is(err, errReceiverDone):
		pw.CloseWithError(err)
		return err
	}
	pw.Close()
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return n.ctxErr(ctx)
	}
}

// ctxErr explains why ctx, derived from the caller's context and the
// network's, is done.
func (n *Network) ctxErr(ctx context.Context) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	return ctx.Err()
}

// receive runs the handler and then closes its end of the pipe, so the
// sender stops writing.
func receive(ctx context.Context, h raft.Handler, env raft.Envelope, pr *io.PipeReader) error {
	err := h.HandleSnapshot(ctx, env, pr)
	pr.CloseWithError(errReceiverDone)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSnapshotRejected, err)
	}
	return nil
}

// spawn runs f on a goroutine that Close waits for; false after Close.
func (n *Network) spawn(f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		return false
	}
	n.wg.Go(f)
	return true
}

// pump copies body into pw in chunks, checking the link before each.
func (n *Network) pump(from, to uint64, pw *io.PipeWriter, body io.Reader) error {
	buf := make([]byte, snapshotChunk)
	for {
		k, rerr := body.Read(buf)
		if k > 0 {
			if !n.linkUp(from, to) {
				return fmt.Errorf("%w: link failed during snapshot", ErrUnreachable)
			}
			if _, err := pw.Write(buf[:k]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading snapshot body: %w", rerr)
		}
	}
}
