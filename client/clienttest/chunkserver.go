package clienttest

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/chunkserver/chunkserverpb"
)

// Chunkserver is a fake chunkserver: it serves Read, Write and Discard for
// the copysets it is a member of, answering NotLeader unless it is the
// copyset's leader. Its methods are safe for concurrent use.
type Chunkserver struct {
	chunkserverpb.UnimplementedChunkserverServer

	c     *Cluster
	id    uint64
	srv   *server
	calls atomic.Int64
	mu    struct {
		sync.Mutex
		failures   int        // calls left to fail with failCode
		failCode   codes.Code // code of injected failures
		delay      time.Duration
		hideLeader bool
	}
}

var _ chunkserverpb.ChunkserverServer = (*Chunkserver)(nil)

func startChunkserver(c *Cluster, id uint64) (*Chunkserver, error) {
	cs := &Chunkserver{c: c, id: id}
	srv, err := serve(func(s *grpc.Server) { chunkserverpb.RegisterChunkserverServer(s, cs) })
	if err != nil {
		return nil, err
	}
	cs.srv = srv
	return cs, nil
}

// ID returns the chunkserver's ID.
func (cs *Chunkserver) ID() uint64 { return cs.id }

// Addr returns the chunkserver's address.
func (cs *Chunkserver) Addr() string { return cs.srv.addr() }

// Calls is the number of Read, Write and Discard calls received, including
// failed ones.
func (cs *Chunkserver) Calls() int64 { return cs.calls.Load() }

// FailNext makes the next n data calls fail with code before anything else
// happens.
func (cs *Chunkserver) FailNext(n int, code codes.Code) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.mu.failures, cs.mu.failCode = n, code
}

// SetDelay delays every data call by d (or until the caller gives up).
func (cs *Chunkserver) SetDelay(d time.Duration) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.mu.delay = d
}

// HideLeader makes NotLeader answers carry no leader (as during an
// election).
func (cs *Chunkserver) HideLeader(hide bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.mu.hideLeader = hide
}

// Stop stops the server: connections drop and new ones are refused.
// Idempotent.
func (cs *Chunkserver) Stop() { cs.srv.stop() }

// faults takes one injected failure (if any) and reads the other switches.
func (cs *Chunkserver) faults() (fail codes.Code, delay time.Duration, hide bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.mu.failures > 0 {
		cs.mu.failures--
		fail = cs.mu.failCode
	}
	return fail, cs.mu.delay, cs.mu.hideLeader
}

// admit counts a data call and applies the fault switches and the leader
// check.
func (cs *Chunkserver) admit(ctx context.Context, copyset uint64) error {
	cs.calls.Add(1)
	fail, delay, hide := cs.faults()
	if fail != codes.OK {
		return status.Errorf(fail, "clienttest: injected failure on chunkserver %d", cs.id)
	}
	if err := sleep(ctx, delay); err != nil {
		return status.FromContextError(err).Err()
	}
	return cs.c.checkLeader(copyset, cs.id, hide)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Write implements chunkserverpb.ChunkserverServer.
func (cs *Chunkserver) Write(ctx context.Context, req *chunkserverpb.WriteRequest) (*chunkserverpb.WriteResponse, error) {
	if err := cs.admit(ctx, req.GetCopyset()); err != nil {
		return nil, err
	}
	err := cs.c.access(req.GetCopyset(), req.GetChunk(), req.GetOffset(), uint64(len(req.GetData())),
		func(b []byte) { copy(b, req.GetData()) })
	if err != nil {
		return nil, err
	}
	return &chunkserverpb.WriteResponse{}, nil
}

// Read implements chunkserverpb.ChunkserverServer.
func (cs *Chunkserver) Read(ctx context.Context, req *chunkserverpb.ReadRequest) (*chunkserverpb.ReadResponse, error) {
	if err := cs.admit(ctx, req.GetCopyset()); err != nil {
		return nil, err
	}
	resp := &chunkserverpb.ReadResponse{}
	err := cs.c.access(req.GetCopyset(), req.GetChunk(), req.GetOffset(), req.GetLength(),
		func(b []byte) { resp.Data = append([]byte(nil), b...) })
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Discard implements chunkserverpb.ChunkserverServer.
func (cs *Chunkserver) Discard(ctx context.Context, req *chunkserverpb.DiscardRequest) (*chunkserverpb.DiscardResponse, error) {
	if err := cs.admit(ctx, req.GetCopyset()); err != nil {
		return nil, err
	}
	err := cs.c.access(req.GetCopyset(), req.GetChunk(), req.GetOffset(), req.GetLength(), func(b []byte) { clear(b) })
	if err != nil {
		return nil, err
	}
	return &chunkserverpb.DiscardResponse{}, nil
}
