// Package clienttest holds test doubles for package client: an in-process,
// fault-injecting fake MDS and fake chunkservers that speak the real gRPC
// APIs (mdspb, chunkserverpb) on 127.0.0.1.
//
// They are fakes, used only in tests: no raft, no disk, no heartbeats.
// Every replica of a copyset shares one in-memory copy of its chunks (what
// a majority would agree on), the leader of each copyset is whatever the
// test says (Cluster.SetLeader), and faults are switches: a chunkserver can
// fail its next calls with a code, delay every call, hide the leader's
// address in its NotLeader answers, or be stopped; the MDS can fail its next
// calls, report a stale leader hint, and fence a writer's session. Counters
// (calls per chunkserver, renewals, segment and copyset lookups) let tests
// check what the client did.
//
// Sessions never expire by time: a test fences one explicitly
// (MDS.Fence) or by opening a second writer with force.
package clienttest
