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
// lease expiry (in the background, retried, best effort). RunDaemon is
// the basalt-rss-master process: the Server, a gossip node with role
// "master" whose membership feeds Config.Members, and /metrics and
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
// In this slice the State lives in memory only: a restarted master has
// forgotten every application, whose clients must register again. The
// State is shaped for replication on the repository's raft runtime: every
// mutation is one State method taking one command value (RegisterApp,
// Heartbeat, UnregisterApp, Expire, RegisterShuffle, Revive, MapEnd,
// CommitDone, UnregisterShuffle) that carries everything the method
// depends on — the time, the worker view, the random seed, a new token —
// so applying the same commands in the same order gives the same State on
// every replica; reads (Authenticate, CommitPlan, Shuffle, Apps) do not
// mutate. Replication will make Server propose these commands instead of
// applying them directly.
//
// # Concurrency and I/O
//
// State is not safe for concurrent use and does no I/O. Server is safe
// for concurrent use: it serializes State access under one mutex, never
// holds it across a call to a worker, and runs the lease collector and
// the deletion retries in goroutines that Close stops. An RPC whose
// context ends returns Canceled or DeadlineExceeded; a CommitShuffle
// whose context ends while workers commit records nothing and can be
// retried.
package master
