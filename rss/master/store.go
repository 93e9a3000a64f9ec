package master

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"basalt/raft"
)

// stateStore is where a Server's State lives: in this process only
// (localStore) or replicated through a raft group (raftStore).
type stateStore interface {
	// update applies c and returns the State method's value.
	update(ctx context.Context, c Command) (any, error)
	// view runs fn on a State that reflects every update acknowledged
	// before the call (a linearizable read).
	view(ctx context.Context, fn func(*State) error) error
	// peek runs fn on this process's State as it is, possibly behind the
	// group's (metrics).
	peek(fn func(*State) error) error
	// leading reports whether this process should carry out the State's
	// background duties (lease expiry): true for a local store, and for
	// the raft leader.
	leading() bool
}

// localStore is a State in memory, serialized by a mutex.
type localStore struct {
	mu    sync.Mutex
	state *State
}

func (l *localStore) update(_ context.Context, c Command) (any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.Apply(c)
}

func (l *localStore) view(_ context.Context, fn func(*State) error) error { return l.peek(fn) }

func (l *localStore) peek(fn func(*State) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fn(l.state)
}

func (l *localStore) leading() bool { return true }

// ReplicationGroup is the raft group holding the master's State.
const ReplicationGroup = 1

// Replication is what a replicated Server needs: a raft host running
// ReplicationGroup with Replica as its state machine, and the gRPC
// address of each master by raft host ID (to name the leader to a client
// that called a follower).
type Replication struct {
	Host    *raft.Host
	Replica *Replica
	Peers   map[uint64]string
}

// raftStore proposes updates to the replication group and reads the
// Replica after a ReadIndex barrier; both only on the leader.
type raftStore struct{ Replication }

func (r *raftStore) update(ctx context.Context, c Command) (any, error) {
	b, err := EncodeCommand(c)
	if err != nil {
		return nil, err
	}
	v, err := r.Host.Propose(ctx, ReplicationGroup, b)
	return v, r.notLeader(err)
}

func (r *raftStore) view(ctx context.Context, fn func(*State) error) error {
	if err := r.Host.ReadIndex(ctx, ReplicationGroup); err != nil {
		return r.notLeader(err)
	}
	return r.Replica.view(fn)
}

func (r *raftStore) peek(fn func(*State) error) error { return r.Replica.view(fn) }

func (r *raftStore) leading() bool {
	leader, _, err := r.Host.Leader(ReplicationGroup)
	return err == nil && leader == r.Host.ID()
}

// notLeader turns the raft errors that mean "ask another master" into a
// NotLeaderError; other errors pass unchanged.
func (r *raftStore) notLeader(err error) error {
	var nl *raft.NotLeaderError
	switch {
	case errors.As(err, &nl):
		return &NotLeaderError{Leader: r.Peers[nl.Leader], err: err}
	case errors.Is(err, raft.ErrProposalDropped), errors.Is(err, raft.ErrProposalUnknown),
		errors.Is(err, raft.ErrStopped), errors.Is(err, raft.ErrGroupStopped):
		// Leadership moved (or this master is stopping) under the call;
		// an unknown outcome is retried too: every command is safe to
		// apply twice (see docs/rss.md).
		return &NotLeaderError{err: err}
	}
	return err
}

// NotLeaderError: this master is not (or no longer) the leader of the
// replicated state; the call can be retried on Leader (its gRPC address,
// empty if unknown) or another master. Across gRPC it is Unavailable, with
// Leader in the masterconn.TrailerLeader trailer.
type NotLeaderError struct {
	Leader string
	err    error
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return fmt.Sprintf("rss master: not the leader (leader unknown): %v", e.err)
	}
	return fmt.Sprintf("rss master: not the leader (the leader is %s): %v", e.Leader, e.err)
}

func (e *NotLeaderError) Unwrap() error { return e.err }
