// Package gossip is the remote shuffle service's membership: a thin layer
// over hashicorp/memberlist through which every worker and master
// publishes its Meta (RPC address, free disk, memory in use, active
// partitions, decommissioning, role) and learns everyone else's.
//
// # What it owns
//
// Start binds the gossip listener (TCP and UDP on Config.BindAddr), joins
// the cluster through Config.Join in the background — retrying until it
// succeeds, and again whenever the node finds itself alone, so that a
// worker may start before the master and a restarted seed is found again —
// and re-reads the local Meta every Config.UpdateInterval, gossiping it
// when it changed. Members returns the Meta of every member memberlist
// considers alive, the local node included.
//
// # What it does not own
//
// It makes no placement or liveness decisions beyond memberlist's failure
// detector (a suspect member stays in Members until it is declared dead),
// keeps nothing on disk and has no security: gossip is unencrypted and unauthenticated, for
// a trusted network. Meta is JSON and must fit in memberlist's 512-byte
// limit; a larger Meta is refused by Start and, later, not gossiped (the
// previous one stays, and the error is logged).
//
// # Concurrency and I/O
//
// A Node is safe for concurrent use. It runs memberlist's goroutines plus
// two of its own (joining, Meta updates), all stopped by Close, which also
// leaves the cluster (bounded by Config.LeaveTimeout). Config.Meta is
// called from those goroutines and must be safe for concurrent use.
// memberlist's log lines go to Config.Logger at their own level.
package gossip
