package chunkserver

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/chunkserver/chunkserverpb"
	"basalt/chunkserver/chunkstore"
	"basalt/chunkserver/copyset"
	"basalt/raft"
)

// api implements the chunkserver data API.
type api struct {
	chunkserverpb.UnimplementedChunkserverServer
	s *Server
}

// Write proposes the write on the copyset and returns once the leader has
// applied it (it is then on a majority's synced raft log).
func (a *api) Write(ctx context.Context, req *chunkserverpb.WriteRequest) (*chunkserverpb.WriteResponse, error) {
	if len(req.GetData()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "chunkserver: empty write")
	}
	cmd := copyset.Command{Op: copyset.OpWrite, Chunk: req.GetChunk(), Offset: int64(req.GetOffset()), Data: req.GetData()}
	if err := a.propose(ctx, req.GetCopyset(), cmd, int64(len(req.GetData()))); err != nil {
		return nil, err
	}
	a.s.metrics.writeBytes.Add(float64(len(req.GetData())))
	return &chunkserverpb.WriteResponse{}, nil
}

// Discard zeroes a range of a chunk through the copyset's log.
func (a *api) Discard(ctx context.Context, req *chunkserverpb.DiscardRequest) (*chunkserverpb.DiscardResponse, error) {
	cmd := copyset.Command{Op: copyset.OpDiscard, Chunk: req.GetChunk(), Offset: int64(req.GetOffset()), Length: int64(req.GetLength())}
	if err := a.propose(ctx, req.GetCopyset(), cmd, int64(req.GetLength())); err != nil {
		return nil, err
	}
	return &chunkserverpb.DiscardResponse{}, nil
}

// DeleteChunk removes a chunk through the copyset's log.
func (a *api) DeleteChunk(ctx context.Context, req *chunkserverpb.DeleteChunkRequest) (*chunkserverpb.DeleteChunkResponse, error) {
	cmd := copyset.Command{Op: copyset.OpDelete, Chunk: req.GetChunk()}
	if err := a.propose(ctx, req.GetCopyset(), cmd, 0); err != nil {
		return nil, err
	}
	return &chunkserverpb.DeleteChunkResponse{}, nil
}

// propose checks the range, then replicates cmd.
func (a *api) propose(ctx context.Context, cs uint64, cmd copyset.Command, length int64) error {
	if err := a.checkRange(cmd.Offset, length); err != nil {
		return err
	}
	_, err := a.s.host.Propose(ctx, cs, cmd.Encode())
	return a.s.toStatus(cs, err)
}

func (a *api) checkRange(off, length int64) error {
	size := a.s.store.ChunkSize()
	if off < 0 || length < 0 || off > size || length > size-off {
		return status.Errorf(codes.OutOfRange, "chunkserver: range [%d, +%d) outside the %d-byte chunk", off, length, size)
	}
	return nil
}

// Read serves a linearizable read on the copyset's leader.
func (a *api) Read(ctx context.Context, req *chunkserverpb.ReadRequest) (*chunkserverpb.ReadResponse, error) {
	cs, n := req.GetCopyset(), int64(req.GetLength())
	if err := a.checkRange(int64(req.GetOffset()), n); err != nil {
		return nil, err
	}
	if err := a.s.host.ReadIndex(ctx, cs); err != nil {
		return nil, a.s.toStatus(cs, err)
	}
	sm := a.s.copyset(cs)
	if sm == nil {
		return nil, status.Errorf(codes.NotFound, "chunkserver: copyset %d not hosted here", cs)
	}
	buf := make([]byte, n)
	if err := sm.ReadChunk(req.GetChunk(), int64(req.GetOffset()), buf); err != nil {
		return nil, a.s.toStatus(cs, err)
	}
	a.s.metrics.readBytes.Add(float64(n))
	return &chunkserverpb.ReadResponse{Data: buf}, nil
}

// Status lists the copysets hosted here.
func (a *api) Status(ctx context.Context, _ *chunkserverpb.StatusRequest) (*chunkserverpb.StatusResponse, error) {
	resp := &chunkserverpb.StatusResponse{Id: a.s.id}
	for _, id := range a.s.host.Groups() {
		st, err := a.s.host.Status(ctx, id)
		if err != nil {
			continue
		}
		resp.Copysets = append(resp.Copysets, &chunkserverpb.CopysetStatus{
			Id: id, Role: st.Role, Term: st.Term, Leader: st.Leader, Applied: st.Applied,
			Commit: st.Commit, Voters: st.Voters,
		})
	}
	return resp, nil
}

// toStatus maps raft, store and command errors to gRPC statuses; a
// not-leader error carries the leader's ID and address.
func (s *Server) toStatus(cs uint64, err error) error {
	var nl *raft.NotLeaderError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nl):
		return s.notLeader(cs, nl.Leader)
	case errors.Is(err, raft.ErrGroupNotFound):
		return status.Errorf(codes.NotFound, "chunkserver: copyset %d not hosted here", cs)
	case errors.Is(err, chunkstore.ErrOutOfRange):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, copyset.ErrBadCommand), errors.Is(err, raft.ErrProposalTooLarge):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unavailable, fmt.Sprintf("chunkserver: copyset %d: %v", cs, err))
}

func (s *Server) notLeader(cs, leader uint64) error {
	st := status.Newf(codes.FailedPrecondition, "chunkserver %d: not the leader of copyset %d", s.id, cs)
	addr := ""
	if leader != 0 {
		addr, _ = s.resolver.Resolve(leader)
	}
	withDetail, err := st.WithDetails(&chunkserverpb.NotLeader{Copyset: cs, LeaderId: leader, LeaderAddress: addr})
	if err != nil {
		return st.Err()
	}
	return withDetail.Err()
}
