// Package client is the Go library applications use to read and write a
// Basalt volume: Open a Volume through the MDS, then ReadAt, WriteAt,
// Discard, Flush and Close it.
//
// # What it owns
//
// Splitting each call at chunk boundaries (offset / segment size gives the
// segment, the remainder / chunk size the chunk) and sending the parts to
// the chunkservers in parallel (at most Options.MaxParallel per call);
// caching segment maps and copysets; guessing each copyset's leader and
// following NotLeader redirects; retrying leader changes, timeouts and lost
// connections until Options.RetryDeadline; one gRPC connection per MDS and
// per chunkserver address; renewing a writer's session lease.
//
// Caching: an allocated segment's map never changes and is kept for the
// life of the Volume. A "never written" answer is kept for reads only and
// only for Options.NegativeCacheTTL (another writer may allocate the
// segment); writes allocate through the MDS, discards ask again. Copyset
// members are kept until a chunkserver call fails: every few failures (and
// at once when a chunkserver says it does not host the copyset) the copyset
// is reloaded from the MDS. Concurrent callers needing the same segment or
// copyset share one MDS call.
//
// # What it does not own
//
// Replication, durability and read consistency belong to the chunkservers
// (each copyset is a raft group); allocation, placement and the writer
// lease to the MDS. The package does not cache data and does not reorder or
// merge writes. A Volume's size is fixed at Open: reopen to see a resize.
//
// # Durability
//
// A write returns only after every byte is on a majority of its copyset's
// replicas, so Flush merely waits for writes in flight. Unaligned writes
// are fine: the chunkserver does the read-modify-write.
//
// # Sessions
//
// A volume has at most one writer. Open as a writer takes the MDS's lease
// (or fails with ErrWriterExists naming the holder, unless Options.Force)
// and a goroutine renews it every third of the lease. If the MDS refuses the
// session (another writer forced the lease), the Volume becomes read-only:
// writes and discards fail with ErrLeaseLost. A renewal that fails for
// another reason (the MDS unreachable) is retried at the next interval and
// writes continue. Readers hold no lease.
//
// # Concurrency
//
// Every Volume method is safe for concurrent use. Concurrent writes to
// overlapping ranges land in no defined order, as with a disk; a read
// concurrent with a write to the same range may see either, per chunk part.
//
// # Contexts
//
// When a call's ctx ends, the call returns ctx.Err(). A write or discard
// whose ctx ended may or may not have been applied, as with a disk. The ctx
// given to Open bounds Open only.
//
// # Errors
//
// Errors wrap the sentinels in errors.go (ErrOutOfRange, ErrUnavailable,
// ErrReadOnly, ErrLeaseLost, ErrClosed, ErrInvalidArgument,
// ErrVolumeNotFound, ErrWriterExists): test them with errors.Is. Errors
// translated from a gRPC status also keep it, for status.Code.
package client
