// Package chunkstore stores the chunks of a chunkserver: one file per chunk,
// taken from a pool of preallocated zero-filled files so a chunk's first
// write does not pay for creating and allocating its file.
//
// Durability: WriteAt, Discard and Delete are not durable when they return;
// Sync makes every operation that completed before it durable (it fsyncs the
// dirty chunk files and the directory). The copyset state machine calls
// Sync at checkpoints; between checkpoints the raft log is the redo log.
//
// Concurrency: all methods are safe for concurrent use. Operations on the
// same chunk must not run concurrently (the copyset that owns a chunk
// serializes them); Sync and Delete exclude each other.
//
// It does not know about copysets, raft or the network. Store is the
// interface the copyset state machine uses, so another implementation (a
// Pebble-backed store, for benchmarks) can replace FileStore.
package chunkstore
