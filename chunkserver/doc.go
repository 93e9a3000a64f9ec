// Package chunkserver will store chunks: every copyset (replica group) is a
// raft group on the raft.Host of the chunkserver process, its state machine
// applies writes to preallocated chunk files, and the data API serves reads
// from the leader under its lease.
//
// Not implemented yet: this package is part of the repository skeleton and
// is built by the block storage core issue (#3). It holds no code.
package chunkserver
