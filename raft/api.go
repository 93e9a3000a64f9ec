package raft

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/raft/v3/raftpb"
)

// Envelope is one raft message addressed to one group. From and To inside
// Message are host IDs: a group has at most one replica per host, and the
// replica's raft ID is its host's ID.
type Envelope struct {
	Group   uint64
	Message *raftpb.Message
}

// Transport carries raft messages between hosts. Implementations: the gRPC
// transport (raft/grpctransport) and the fault-injecting simulator
// (internal/simnet).
type Transport interface {
	// Send queues messages for delivery and returns at once; it never blocks
	// on the network. Messages may be dropped (raft retransmits); a host that
	// cannot be reached is reported through Handler.HandleUnreachable.
	// Send may be called concurrently. The callee owns msgs after the call.
	Send(msgs []Envelope)
	// SendSnapshot streams a snapshot to env.Message.To: env is the MsgSnap
	// (its Snapshot.Data is ignored) and body the state machine's bytes. It
	// blocks until the receiver has stored the whole snapshot, refused it, or
	// ctx expires.
	SendSnapshot(ctx context.Context, env Envelope, body io.Reader) error
}

// Handler receives inbound traffic from a Transport. *Host implements it.
type Handler interface {
	// HandleMessages delivers messages that arrived from another host. It
	// does not block on raft processing; the callee owns msgs.
	HandleMessages(msgs []Envelope)
	// HandleSnapshot receives a snapshot stream: env is the MsgSnap, body
	// the state machine's bytes. It returns once the snapshot is stored
	// durably on the receiving host (nil) or refused (error).
	HandleSnapshot(ctx context.Context, env Envelope, body io.Reader) error
	// HandleUnreachable reports that messages to host could not be sent.
	HandleUnreachable(host uint64)
}

// EntryType tells a state machine what a committed entry carries.
type EntryType int

const (
	// EntryNormal is a command proposed with Host.Propose.
	EntryNormal EntryType = iota
	// EntryConfChange is a membership change; Data is empty and the new
	// membership is in Conf. State machines usually only record Index.
	EntryConfChange
	// EntryEmpty is an entry without a command (a new leader's first entry).
	EntryEmpty
)

// Entry is one committed log entry handed to a state machine.
type Entry struct {
	Index uint64
	Term  uint64
	Type  EntryType
	// Data is the command as proposed (EntryNormal only).
	Data []byte
	// Conf is the membership after this entry (EntryConfChange only).
	Conf *raftpb.ConfState
}

// Result is the outcome of applying one entry; it is returned to the
// proposer on this host. Err is an application error (it does not stop the
// group); Value is anything the state machine wants to give the proposer.
type Result struct {
	Value any
	Err   error
}

// StateMachine is the replicated state of one group. The host calls Open
// once, then Apply, Snapshot and Restore from one goroutine per group, in
// log order; Close last. No method is called concurrently with another for
// the same group.
type StateMachine interface {
	// Open loads the state machine's durable state and returns the index of
	// the last entry whose effects that state includes (0 for none). The host
	// replays committed entries after it.
	Open(ctx context.Context) (applied uint64, err error)
	// Apply applies committed entries in order and returns one Result per
	// entry. The effects need not be durable: the raft log is the redo log
	// until the state machine reports durability with Host.Compact. An error
	// return is fatal for the group (it stops applying).
	Apply(entries []Entry) ([]Result, error)
	// Snapshot captures the state at the last applied entry. It is called
	// between Apply calls, so it must be cheap (copy-on-write, a Pebble
	// snapshot, hard links); the returned source is read later, from another
	// goroutine, possibly several times, until Close.
	Snapshot() (SnapshotSource, error)
	// Restore replaces the whole state with a snapshot's bytes, taken at
	// index. The state must be durable when Restore returns.
	Restore(ctx context.Context, index uint64, r io.Reader) error
	// Close releases resources; called once when the group stops.
	Close() error
}

// SnapshotSource is a state machine snapshot that can be streamed.
type SnapshotSource interface {
	// WriteTo writes the snapshot's bytes. It may be called several times
	// (once per follower that needs the snapshot) and concurrently.
	WriteTo(ctx context.Context, w io.Writer) error
	// Close releases the snapshot.
	Close() error
}

// Factory creates the state machine of a group; called when a group is
// created and, on restart, for every group the host brings back.
type Factory func(group uint64) (StateMachine, error)

// Errors returned by the host. Test with errors.Is / errors.As.
var (
	// ErrGroupNotFound: this host has no replica of the group.
	ErrGroupNotFound = errors.New("raft: group not found")
	// ErrGroupExists: CreateGroup for a group this host already has.
	ErrGroupExists = errors.New("raft: group already exists")
	// ErrStopped: the host has stopped.
	ErrStopped = errors.New("raft: host stopped")
	// ErrGroupStopped: the group was destroyed while the call waited.
	ErrGroupStopped = errors.New("raft: group stopped")
	// ErrProposalDropped: the proposal was definitely not applied (raft
	// refused it, or another entry took its log position); retry is safe.
	ErrProposalDropped = errors.New("raft: proposal dropped (it was not applied)")
	// ErrProposalUnknown: a snapshot replaced the log around the proposal;
	// it may or may not have been applied.
	ErrProposalUnknown = errors.New("raft: proposal outcome unknown (a snapshot replaced the log)")
	// ErrProposalTooLarge: the command exceeds Config.MaxProposalBytes.
	ErrProposalTooLarge = errors.New("raft: proposal too large")
	// ErrTransferFailed: leadership did not move before the context ended.
	ErrTransferFailed = errors.New("raft: leadership transfer did not complete")
	// ErrInvalidConfig: a Config or argument is invalid.
	ErrInvalidConfig = errors.New("raft: invalid config")
	// ErrInvalidMessage: a malformed message or snapshot stream arrived.
	ErrInvalidMessage = errors.New("raft: invalid message")
	// ErrGroupFailed: the group's state machine or storage failed; the
	// group no longer applies entries on this host.
	ErrGroupFailed = errors.New("raft: group failed")
)

// NotLeaderError is returned for an operation that only a group's leader
// may start. Leader is the leader's host ID if this host knows it, else 0.
type NotLeaderError struct {
	Group  uint64
	Leader uint64
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return fmt.Sprintf("raft: not leader of group %d (leader unknown)", e.Group)
	}
	return fmt.Sprintf("raft: not leader of group %d (leader is host %d)", e.Group, e.Leader)
}
