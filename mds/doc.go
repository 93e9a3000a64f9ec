// Package mds is Basalt's metadata server (MDS): the server side of the
// mdspb.MDS gRPC API, for one replica.
//
// # What it owns
//
// Topology: chunkservers register (RegisterChunkserver assigns stable IDs
// from a persisted counter) and heartbeat; liveness is a TTL
// (Config.HeartbeatTTL) on the last heartbeat, measured with Config.Clock.
// The pool: once Config.MinChunkservers alive chunkservers in at least
// Config.Replicas zones have registered, the copysets are laid out once
// with placement.PlanPool and persisted. Volumes (create, stat, list,
// grow, delete), segment maps allocated lazily on a writer's first
// request, cluster-unique chunk IDs, writer sessions (one writer lease per
// volume, renewed by the client, taken over with force) and the chunks of
// deleted volumes until the leaders of their copysets acknowledge deleting
// them.
//
// # What it does not do (yet)
//
// Chunkservers that register after the pool exists get no copysets, and a
// dead chunkserver's copysets are not re-replicated: rebalancing and the
// scheduler are later issues. The MDS does not replicate itself either:
// its store is behind the KV interface so that a raft-replicated KV can
// replace PebbleKV. Chunkservers do not check writer sessions yet, so a
// fenced writer is refused new segments and renewals, not writes to
// segments it already holds.
//
// # Storage
//
// State lives in a KV (PebbleKV: one Pebble DB in Config.Dir/meta on
// Config.FS). Every record is a protobuf message of
// proto/basalt/mds/v1/state.proto (package mdspb) under the keys
// documented in keys.go. Every change is one atomic, synced KV batch
// (for example a segment map together with the chunk ID counter), applied
// before memory is updated, so a crash loses nothing a call returned and
// never half of one. Everything but segment maps is also held in memory;
// New loads it, reading every segment map once to count chunks per
// copyset. Heartbeat state (capacity, used, reported leaders) and lease
// deadlines live only in memory: after a restart every chunkserver is dead
// until it heartbeats, and every writer session gets a fresh lease.
//
// # Errors
//
// Errors are the package's sentinels (ErrVolumeNotFound, ...) and
// *WriterExistsError. The Server's RPCs return them as gRPC statuses: the
// sentinel's code (InvalidArgument, NotFound, AlreadyExists, OutOfRange,
// FailedPrecondition, Unavailable) with an mdspb.ErrorDetail naming it;
// FromStatus turns such a status back into an error that matches the
// sentinel with errors.Is, on the client side.
//
// # Concurrency
//
// Every exported method of Server is safe for concurrent use; they are
// serialized by one mutex held across store writes, which among other
// things makes concurrent allocations of one segment return the same map.
// RPCs fail at once when their context is already done and otherwise run
// to completion. The Daemon (RunDaemon, for cmd/basalt-mds) wires the
// Server to a gRPC server, Prometheus metrics and /healthz; package
// mds/mdstest runs a Server in-process for other packages' tests.
package mds
