// Package masterconn is a client connection to the RSS masters of one
// cluster: a gRPC grpc.ClientConnInterface (pass it to
// rsspb.NewMasterClient) that sends every call to the master that leads
// the replicated state, and moves to another one when that master is down
// or answers that it is not the leader.
//
// A master that refuses a call because it does not lead answers
// Unavailable with the leader's address (possibly empty: unknown) in the
// basalt-rss-leader trailer; the call is retried there, or on the next
// address. A call that never reached a master (connection refused, the
// master died mid-call) is Unavailable without the basalt-rss-served
// trailer every master error carries, and is retried on the next address
// too. Any other outcome, including a master's own Unavailable (no usable
// worker, a failed commit), is returned as it is. After every address was
// tried the connection backs off (50ms doubling to 1s) and goes round
// again until the call's context or the failover window ends.
//
// Retrying a call whose outcome is unknown is safe because every master
// command is: see docs/rss.md, "Master replication".
package masterconn
