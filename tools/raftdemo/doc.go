// Package raftdemo runs a three-host raft cluster in one process, over
// loopback gRPC with every host's log in its own Pebble DB on disk, and
// drives a steady write load through it. It is what `basalt raft-demo`
// runs: the quickest way to watch the multi-raft runtime elect leaders,
// replicate, fail over (with Chaos) and recover its data on restart.
//
// The demo's state machine (Counter) counts applied entries and bytes and
// checkpoints to a file, so restarts replay only the log after the last
// checkpoint. Nothing here is used by the storage daemons.
package raftdemo
