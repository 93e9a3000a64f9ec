// Package chunkserver is the chunkserver: one process that stores chunks
// for many copysets. It registers with the MDS, hosts every copyset the MDS
// assigns to it as a raft group on one raft.Host (raft log in Pebble under
// Dir/raft), applies the copysets' commands to one chunk store (Dir/chunks)
// through copyset state machines, and serves the data API
// (chunkserverpb.Chunkserver: Write, Read, Discard, DeleteChunk, Status)
// and the raft transport on one gRPC server.
//
// Writes are proposed on the copyset's raft group and acknowledged once
// applied on the leader: they are then on a majority's synced raft log.
// Reads are served by the leader after a lease-based ReadIndex. Other
// replicas answer FailedPrecondition with a NotLeader detail naming the
// leader. Every CheckpointInterval each copyset is checkpointed (chunk files
// synced, applied index recorded) and its raft log truncated behind it;
// after a crash the log after the last checkpoint is replayed.
//
// It does not place copysets (the MDS does), rebalance, or re-replicate
// after failures (a later issue). Copysets assigned by the MDS after the
// chunkserver joined are created as they appear in heartbeat responses.
//
// Concurrency: Server's methods are safe for concurrent use; Run blocks
// until its context ends, then shuts down cleanly.
package chunkserver
