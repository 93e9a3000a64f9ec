// Package copyset is the raft state machine of one copyset: it applies
// chunk writes, discards and deletes to the chunkserver's chunk store,
// checkpoints, and produces and restores snapshots.
//
// Durability: Apply never fsyncs; the raft log is the redo log. Checkpoint
// syncs the chunk store and then records the applied index durably; the
// caller then lets the raft host truncate the log there (raft.Host.Compact).
// Every command is idempotent (a write puts fixed bytes at a fixed place;
// deleting a missing chunk does nothing), so replaying the log after the
// last checkpoint, possibly over effects that were already on disk, yields
// the same state.
//
// Snapshots are fuzzy: the chunk files are streamed as they are while
// applies continue, tagged with the index at which the stream began. The
// receiver then replays the entries after that index, which overwrites
// every byte changed since to its final value (physical redo). No data is
// copied or frozen to take a snapshot.
//
// Concurrency: the raft host calls Open, Apply, Snapshot and Restore from
// one goroutine; Checkpoint, Chunks and Applied may be called from others.
// The package does no networking; reads are served by the chunkserver from
// the chunk store after raft.Host.ReadIndex.
package copyset
