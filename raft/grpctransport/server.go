package grpctransport

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/raft"
	"basalt/raft/transportpb"
)

// server implements the RaftTransport service for a Transport.
type server struct {
	transportpb.UnimplementedRaftTransportServer
	t *Transport
}

// Batch receives message batches from one peer and hands them to the
// handler. A batch for another host is answered with wrong_host and ends
// the stream with FailedPrecondition.
func (s *server) Batch(stream grpc.BidiStreamingServer[transportpb.MessageBatch, transportpb.BatchResponse]) error {
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.checkOpen(); err != nil {
			return err
		}
		if err := s.checkBatchHost(stream, b); err != nil {
			return err
		}
		if err := s.deliver(b); err != nil {
			return err
		}
	}
}

// checkOpen returns Unavailable after Close.
func (s *server) checkOpen() error {
	if s.t.ctx.Err() != nil {
		return status.Error(codes.Unavailable, ErrClosed.Error())
	}
	return nil
}

// checkBatchHost rejects a batch addressed to another host.
func (s *server) checkBatchHost(stream grpc.BidiStreamingServer[transportpb.MessageBatch, transportpb.BatchResponse], b *transportpb.MessageBatch) error {
	if b.GetToHost() == s.t.cfg.HostID {
		return nil
	}
	msg := fmt.Sprintf("batch for host %d reached host %d", b.GetToHost(), s.t.cfg.HostID)
	s.t.log.Warn("raft transport: rejecting batch", "peer", b.GetFromHost(), "to_host", b.GetToHost())
	s.t.metrics.drop(dropInvalid, len(b.GetMessages()))
	_ = stream.Send(&transportpb.BatchResponse{Error: msg, WrongHost: true})
	return status.Error(codes.FailedPrecondition, msg)
}

// deliver decodes b and hands its messages to the handler; without a
// handler they are dropped.
func (s *server) deliver(b *transportpb.MessageBatch) error {
	envs, err := decodeBatch(b)
	if err != nil {
		s.t.log.Warn("raft transport: bad batch", "peer", b.GetFromHost(), "err", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	h := s.t.loadHandler()
	if h == nil {
		s.t.metrics.drop(dropNoHandler, len(envs))
		return nil
	}
	s.t.metrics.received.Add(float64(len(envs)))
	h.HandleMessages(envs)
	return nil
}

// decodeBatch unmarshals every message of b.
func decodeBatch(b *transportpb.MessageBatch) ([]raft.Envelope, error) {
	envs := make([]raft.Envelope, len(b.GetMessages()))
	for i, rm := range b.GetMessages() {
		env, err := decodeMessage(rm)
		if err != nil {
			return nil, err
		}
		envs[i] = env
	}
	return envs, nil
}

// decodeMessage unwraps one RaftMessage (gRPC has already decoded it).
func decodeMessage(rm *transportpb.RaftMessage) (raft.Envelope, error) {
	if rm.GetMessage() == nil {
		return raft.Envelope{}, fmt.Errorf("%w: message of group %d has no body", ErrInvalidMessage, rm.GetGroup())
	}
	return raft.Envelope{Group: rm.GetGroup(), Message: rm.GetMessage()}, nil
}

// errorCode maps a snapshot error to the status code the sender maps back.
func errorCode(err error) codes.Code {
	switch {
	case errors.Is(err, ErrWrongHost):
		return codes.FailedPrecondition
	case errors.Is(err, ErrNoHandler), errors.Is(err, ErrClosed):
		return codes.Unavailable
	}
	return codes.InvalidArgument
}
