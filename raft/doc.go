// Package raft is Basalt's multi-raft runtime: one Host runs many raft
// groups (etcd's go.etcd.io/raft/v3 RawNodes) in one process, for the
// chunkservers' copysets and the MDS's own replicated state.
//
// # What it owns
//
// The raft log, HardState, membership and snapshot metadata of every group,
// all in one Pebble DB under Config.Dir; group creation and destruction
// (persisted, so a restarted host brings back exactly its groups);
// proposals that return when applied; linearizable reads (ReadIndex, lease
// based by default with CheckQuorum); membership changes (ConfChangeV2 with
// learners); leadership transfer; snapshot transfer; log truncation once a
// state machine reports its state durable (Compact).
//
// # What it does not own
//
// The state machines (StateMachine, created by Config.Factory) decide what
// entries mean, what a snapshot contains and when their state is durable.
// The network is a Transport: raft/grpctransport in production,
// internal/simnet in tests. Placement of groups on hosts is the caller's.
//
// # Loop and durability
//
// One goroutine per Host ticks every group and runs Ready rounds: it takes
// the Ready of every group that has one, writes all their entries and
// HardStates into one Pebble batch, and commits it with one fsync (group
// commit) on a helper goroutine while it keeps stepping messages. When the
// batch is durable the round lands: the loop sends its messages, hands
// committed entries to the groups' appliers and advances the RawNodes.
// Nothing is sent before the state it depends on is on disk. Each group applies entries on its own
// goroutine (applier) so a slow state machine never stalls other groups.
// Membership changes are applied to raft on the loop and persisted with a
// sync before the state machine sees them.
//
// State machine effects need not be durable: on restart the host asks each
// state machine (Open) which index its durable state covers and replays the
// log after it. A received snapshot is staged to a file and synced before
// raft accepts it; it stays until the state machine has restored it, so a
// crash in between restores it again on restart.
//
// # Concurrency
//
// Every exported method of Host is safe for concurrent use; operations that
// touch raft state run on the loop goroutine and wait for it. Methods that
// take a context return when it expires; a proposal whose context expired
// may still be applied.
package raft
