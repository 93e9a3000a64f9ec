package grpctransport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"basalt/raft"
	"basalt/raft/transportpb"
)

type (
	snapshotClient = grpc.ClientStreamingClient[transportpb.SnapshotChunk, transportpb.SnapshotResponse]
	snapshotServer = grpc.ClientStreamingServer[transportpb.SnapshotChunk, transportpb.SnapshotResponse]
)

// SendSnapshot implements raft.Transport: it dials env.Message.To on a
// connection of its own, sends the header chunk and then body in
// SnapshotChunkBytes chunks, and waits for the receiver's verdict. A
// refusal is returned wrapping ErrSnapshotRejected. If ctx expires, body
// fails or the transport closes, the stream is cancelled (never cleanly
// closed) so the receiver's reader fails instead of seeing a short body.
func (t *Transport) SendSnapshot(ctx context.Context, env raft.Envelope, body io.Reader) error {
	to := env.Message.GetTo()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.ctx, cancel)()
	if err := t.sendSnapshot(ctx, cancel, env, body); err != nil {
		return fmt.Errorf("grpctransport: sending snapshot to host %d: %w", to, t.snapshotError(ctx, err))
	}
	return nil
}

// sendSnapshot does the work of SendSnapshot; cancel aborts the stream.
func (t *Transport) sendSnapshot(ctx context.Context, cancel context.CancelFunc, env raft.Envelope, body io.Reader) error {
	header, err := t.snapshotHeader(env)
	if err != nil {
		return err
	}
	cc, err := t.dial(ctx, env.Message.GetTo())
	if err != nil {
		return err
	}
	defer cc.Close()
	stream, err := transportpb.NewRaftTransportClient(cc).Snapshot(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(header); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := t.sendChunks(ctx, cancel, stream, body); err != nil {
		return err
	}
	return closeAndCheck(stream)
}

// snapshotHeader builds the first chunk: env's MsgSnap without
// Snapshot.Data.
func (t *Transport) snapshotHeader(env raft.Envelope) (*transportpb.SnapshotChunk, error) {
	m, ok := proto.Clone(env.Message).(*raftpb.Message)
	if !ok || m.GetTo() == 0 {
		return nil, errors.New("envelope without destination")
	}
	if m.Snapshot != nil {
		m.Snapshot.Data = nil
	}
	return &transportpb.SnapshotChunk{Header: &transportpb.SnapshotHeader{
		FromHost: t.cfg.HostID,
		ToHost:   m.GetTo(),
		Message:  &transportpb.RaftMessage{Group: env.Group, Message: m},
	}}, nil
}

// sendChunks streams body. If body fails it cancels the stream and returns
// the error. A send that fails with io.EOF (the receiver ended the stream
// early) returns nil: the verdict comes from closeAndCheck.
func (t *Transport) sendChunks(ctx context.Context, cancel context.CancelFunc, s snapshotClient, body io.Reader) error {
	for ctx.Err() == nil {
		// A fresh buffer per chunk: gRPC may use a sent message lazily.
		buf := make([]byte, t.cfg.SnapshotChunkBytes)
		n, rerr := io.ReadFull(body, buf)
		if n > 0 {
			if err := s.Send(&transportpb.SnapshotChunk{Data: buf[:n]}); err != nil {
				return ignoreEOF(err)
			}
			t.metrics.snapshotSent.Add(float64(n))
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return nil
		}
		if rerr != nil {
			cancel()
			return fmt.Errorf("reading snapshot body: %w", rerr)
		}
	}
	return ctx.Err()
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// closeAndCheck ends the upload and turns the receiver's verdict into an
// error.
func closeAndCheck(s snapshotClient) error {
	resp, err := s.CloseAndRecv()
	if err != nil {
		return err
	}
	if !resp.GetAccepted() {
		return fmt.Errorf("%w: %s", ErrSnapshotRejected, resp.GetError())
	}
	return nil
}

// snapshotError maps a gRPC status back to this package's errors, and
// prefers the context's error once ctx is done.
func (t *Transport) snapshotError(ctx context.Context, err error) error {
	switch {
	case t.ctx.Err() != nil:
		return ErrClosed
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", ErrWrongHost, st.Message())
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, st.Message())
	}
	return err
}

// Snapshot receives one snapshot and hands it to the handler with a reader
// over the remaining chunks.
func (s *server) Snapshot(stream snapshotServer) error {
	env, err := s.snapshotHeader(stream)
	if err != nil {
		s.t.log.Warn("raft transport: refusing snapshot", "err", err)
		return status.Error(errorCode(err), err.Error())
	}
	h := s.t.loadHandler()
	if h == nil {
		return status.Error(errorCode(ErrNoHandler), ErrNoHandler.Error())
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(s.t.ctx, cancel)()
	body := &chunkReader{stream: stream}
	err = h.HandleSnapshot(ctx, env, body)
	s.t.metrics.snapshotReceived.Add(float64(body.n))
	return stream.SendAndClose(snapshotResponse(err, body.n))
}

// snapshotHeader reads and checks the first chunk.
func (s *server) snapshotHeader(stream snapshotServer) (raft.Envelope, error) {
	if err := s.checkOpen(); err != nil {
		return raft.Envelope{}, ErrClosed
	}
	first, err := stream.Recv()
	if err != nil {
		return raft.Envelope{}, fmt.Errorf("receiving snapshot header: %w", err)
	}
	hdr := first.GetHeader()
	switch {
	case hdr == nil:
		return raft.Envelope{}, errors.New("first snapshot chunk has no header")
	case hdr.GetToHost() != s.t.cfg.HostID:
		return raft.Envelope{}, fmt.Errorf("%w: snapshot for host %d reached host %d",
			ErrWrongHost, hdr.GetToHost(), s.t.cfg.HostID)
	case len(first.GetData()) > 0:
		return raft.Envelope{}, errors.New("snapshot header chunk carries data")
	}
	env, err := decodeMessage(hdr.GetMessage())
	if err == nil && env.Message.GetType() != raftpb.MsgSnap {
		err = fmt.Errorf("snapshot header carries %s, not MsgSnap", env.Message.GetType())
	}
	return env, err
}

func snapshotResponse(err error, n int64) *transportpb.SnapshotResponse {
	if err != nil {
		return &transportpb.SnapshotResponse{Error: err.Error(), Bytes: uint64(n)}
	}
	return &transportpb.SnapshotResponse{Accepted: true, Bytes: uint64(n)}
}

// chunkReader reads a snapshot body from the chunks of a stream. It returns
// io.EOF only when the sender closed the stream cleanly; a stream that
// breaks midway yields an error wrapping ErrStreamBroken.
type chunkReader struct {
	stream snapshotServer
	buf    []byte
	n      int64
	err    error
}

var _ io.Reader = (*chunkReader)(nil)

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 && r.err == nil {
		r.fill()
	}
	if len(r.buf) == 0 {
		return 0, r.err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.n += int64(n)
	return n, nil
}

// fill receives the next chunk into buf, or sets err.
func (r *chunkReader) fill() {
	chunk, err := r.stream.Recv()
	switch {
	case errors.Is(err, io.EOF):
		r.err = io.EOF
	case err != nil:
		r.err = fmt.Errorf("%w: %w", ErrStreamBroken, err)
	case chunk.GetHeader() != nil:
		r.err = fmt.Errorf("%w: second header in stream", ErrStreamBroken)
	default:
		r.buf = chunk.GetData()
	}
}
