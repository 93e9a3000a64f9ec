// Package grpctransport is the gRPC implementation of raft.Transport: it
// carries the raft messages of every group between hosts, batched per peer
// host, and streams snapshots.
//
// # Wire protocol
//
// The service is basalt.raft.v1.RaftTransport (proto/basalt/raft/v1). Each
// host keeps one Batch stream open to each peer it talks to. Send puts
// messages in the peer's bounded queue and returns; the peer's goroutine
// drains everything queued (up to Config.MaxBatchBytes) into one
// MessageBatch, so the heartbeats of many groups travel in one gRPC message.
// Each raftpb.Message (a protobuf-go message) is embedded in the batch, so
// it is marshaled once, with the batch, and decoded in place; gRPC's
// flow-control windows are fixed and large (8 MiB per stream, 32 MiB per
// connection) to avoid BDP pings and WINDOW_UPDATE writes. The receiver checks that to_host is its own host ID: a batch for
// another host (a stale address) is answered with wrong_host and the stream
// is ended, which the sender reports as unreachable and redials after
// re-resolving the address.
//
// Snapshots travel on a Snapshot stream of their own, on a connection of
// their own, so a large transfer never delays heartbeats: a header chunk
// (the MsgSnap and the hosts) and then the state machine's bytes in
// Config.SnapshotChunkBytes chunks. The receiver hands the handler a reader
// over the chunks; the reader returns io.EOF only if the sender closed the
// stream after the last chunk, and an error wrapping ErrStreamBroken if the
// stream broke, so a handler never stores a truncated snapshot by mistake.
//
// # Failures
//
// Delivery is best effort, as raft expects: a full queue drops new messages;
// a dial or stream failure drops everything queued for that peer, reports
// the peer with Handler.HandleUnreachable, and redials after a backoff
// (100ms doubling to 2s, dropping messages meanwhile). Every drop is counted
// in basalt_raft_transport_messages_dropped_total by reason.
//
// # What it does not do
//
// It does not authenticate or encrypt (TLS is a later issue), does not own
// the gRPC server (the caller creates, starts and stops it and registers the
// service with Register), registers no metrics (see Collectors), and keeps
// no state on disk. It does not detect a silently dead peer faster than TCP
// does; add keepalive parameters through Config.DialOptions (and a matching
// keepalive.EnforcementPolicy on the server) for that.
//
// # Concurrency
//
// All methods of Transport may be called concurrently. Send never blocks.
// Handler methods are called from gRPC server goroutines (HandleMessages,
// HandleSnapshot, one call at a time per inbound stream) and from peer
// goroutines (HandleUnreachable); they must not block for long, because a
// blocked HandleMessages stalls that peer's stream. Close stops every
// goroutine the transport started and waits for them.
package grpctransport
