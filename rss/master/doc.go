// Package master is the remote shuffle service's master: the bookkeeping
// of applications, shuffles, partition locations and map completions,
// and the gRPC service (rsspb.MasterServer) over it. See docs/rss.md.
//
// # What it owns
//
// State is the pure core: applications with their secret tokens and lease
// expiry; each application's shuffles; every epoch of every partition's
// location (a primary and, unless the shuffle has no replicas, a replica
// on a worker with another ID); placement (live, non-decommissioning
// workers with enough free disk, ranked by free disk then partition
// counts, random among the tied best); Revive (a new epoch away from the
// failed workers where possible); map winners (the first attempt to end
// wins, later ones are recorded and ignored); and commit bookkeeping.
//
// Server authenticates every call but RegisterApplication and Status
// from the gRPC metadata keys "basalt-rss-app" and "basalt-rss-token",
// turns each call into one State command, and carries out its effects on
// the workers through Config.Dialer: Commit on every worker of a shuffle
// (CommitShuffle, in parallel, bounded by Config.CommitTimeout) and
// DeleteShuffle when a shuffle or an application goes away, including by
// lease expiry (in the background, retried, then given up). RunDaemon
// is the basalt-rss-master process: the Server, a gossip node with role
// "master" whose membership feeds Config.Members, with --raft-id the
// raft host and its transport on the same gRPC port, and /metrics and
// /healthz.
//
// # What it does not own
//
// Worker liveness and load come from the membership (package gossip); the
// master never probes workers. It stores no shuffle data and does not
// check that every map ended before a commit (readers check the winners'
// batch counts).
//
// # Durability and replication
//
// Every mutation is one State method taking one command value (Command:
// RegisterApp, Heartbeat, UnregisterApp, Expire, RegisterShuffle, Revive,
// MapEnd, CommitDone, UnregisterShuffle, DeletionDone) that carries
// everything the method depends on — the time, the worker view, the
// random seed, a new token — so applying the same commands in the same
// order gives the same State on every replica; reads (Authenticate,
// CommitPlan, Shuffle, Apps, PendingDeletions) do not mutate.
//
// New keeps the State in memory only (a restarted master has forgotten
// every application). NewReplicated keeps it in a raft group of the
// repository's raft runtime (ReplicationGroup on a raft.Host): the Server
// proposes each command (JSON, EncodeCommand) and returns the value the
// Replica, the group's state machine, computed applying it; reads wait
// for a ReadIndex. Both happen on the leader only: elsewhere a call fails
// with a NotLeaderError, Unavailable across gRPC with the leader's
// address in the basalt-rss-leader trailer, which package masterconn
// follows. The Replica checkpoints the whole State to one file (the
// daemon's --checkpoint-interval) and the raft log is truncated behind
// it. Side effects on the workers run where the State's duties run (the
// leader): lease expiry, commits, and deletions, which are recorded in
// the State as pending until each worker reported its files gone, so a
// new leader finishes what the old one left. Every command a client
// drives is safe to apply twice (a call retried after a failover): see
// docs/rss.md.
//
// # Concurrency and I/O
//
// State is not safe for concurrent use and does no I/O. Server is safe
// for concurrent use: it serializes State access (a mutex, or the raft
// apply loop), never holds it across a call to a worker, and runs the
// lease collector and the deletion retries in goroutines that Close
// stops. An RPC whose
// context ends returns Canceled or DeadlineExceeded; a CommitShuffle
// whose context ends while workers commit records nothing and can be
// retried.
package master
