// Package placement chooses the chunkservers that hold each copyset: the pure
// placement core of the metadata server (MDS).
//
// # What it owns
//
// PlanPool lays out the initial copysets of a pool: how many there are and
// which Replicas chunkservers, in Replicas distinct zones, hold each one,
// keeping every server's copyset count close to the mean and spreading each
// server's copysets over many peers (scatter width), so that a dead server's
// data is rebuilt from and onto many others. Place picks one chunkserver to
// add to an existing copyset, for re-replication after a failure: it
// filters the candidates cheaply first (alive, not full, not a member, in a
// zone no member uses), ranks them by free capacity and copyset count, and
// picks randomly among the best few so that allocators deciding
// concurrently on the same view rarely pick the same server.
//
// # What it does not own
//
// The package holds no state and does no I/O: the caller passes the
// topology (Chunkserver, with capacity, usage and copyset counts from
// heartbeats) and the existing copysets on every call, and persists and
// carries out the result. It does not detect liveness (the caller sets
// Chunkserver.Alive, typically from a heartbeat TTL), read a clock, or
// create raft groups.
//
// # Concurrency
//
// Every function is pure: its output depends only on its arguments, it
// never modifies them, and randomness comes only from the *rand.Rand passed
// in, so a seeded generator makes results reproducible. Functions are safe
// for concurrent use as long as each goroutine passes its own *rand.Rand
// (a rand.Rand is not safe for concurrent use).
package placement
