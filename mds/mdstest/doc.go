// Package mdstest runs a real MDS (package mds) in-process for tests: a
// manual Clock for leases and heartbeat TTLs, a small test Config on an
// in-memory filesystem, and Start, which serves an mds.Server over gRPC on
// 127.0.0.1 and hands back a client. It owns the goroutines it starts and
// stops them in the test's cleanup; it is for tests only.
package mdstest
