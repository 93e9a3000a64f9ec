// Package rafttest holds test helpers for the raft package and its users:
// KV, a small replicated key-value state machine that can checkpoint to a
// vfs.FS (so crash tests can lose its unsynced writes), and Cluster, a set
// of hosts wired through the fault-injecting internal/simnet network.
//
// Nothing here is used in production code.
package rafttest
