// Package simnet is an in-process network for tests of code that talks
// through raft.Transport: each host gets an Endpoint, and the Network
// injects faults between them — partitions, crashed (disconnected) hosts,
// random drops, duplicates, and random delays that reorder messages.
//
// # Determinism
//
// Every fault decision is drawn from one math/rand source seeded by New,
// under a mutex, with a fixed number of draws per message or snapshot. The
// same seed with the same sequence of Send calls and fault settings gives
// the same decisions, so a test that prints Seed on failure can be replayed.
// Wall-clock timing (delays, goroutine scheduling) is not deterministic; a
// test that needs a deterministic interleaving must drive one host at a
// time or use testing/synctest.
//
// # Delivery
//
// Send never calls a handler: each message is copied (marshaled) at once
// and handed to the destination's delivery goroutine, directly when no
// delay is set (so messages keep their order per (from, to) pair) or from a
// timer when one is. Links are checked when a message is sent and again
// when it is delivered, so messages in flight to a host that goes down or is
// partitioned away are lost. A message lost because its link is down (not a
// random drop) is reported to the sender's handler with HandleUnreachable,
// from the sender's own delivery goroutine. Receivers get fresh copies: the
// sender, the receiver and duplicate copies never share memory.
//
// SendSnapshot is subject to the same link rules and one drop draw, then
// streams the body through an io.Pipe to the destination's HandleSnapshot.
//
// # What it does not do
//
// It does not model bandwidth, queue limits or message sizes, and does not
// touch the real network. It lives in the production tree (internal/) so
// that the tests of several packages can use it, and does not import the
// testing package.
//
// # Concurrency
//
// All methods may be called concurrently. Handlers run on one delivery
// goroutine per destination host (HandleMessages and HandleUnreachable) and
// on one goroutine per snapshot (HandleSnapshot). Close stops them all and
// waits for handler calls in progress.
package simnet
