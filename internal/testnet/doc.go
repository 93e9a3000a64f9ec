// Package testnet hands tests loopback addresses for daemons they start
// as processes, which must be told their ports up front. Only test code
// imports it.
//
// An address from 127.0.0.1:0 that a test closes and passes on can be
// handed by the kernel to any other process in the meantime (the test
// binaries of other packages run at the same time), and a daemon that
// binds it then dies with "address already in use". FreeAddr instead
// picks ports below the kernel's ephemeral range (32768 and up), which
// bind(0) never hands out, and checks that both TCP and UDP are free on
// them (gossip binds both). Ports go out in sequence from a start that depends on
// the process id, so two test binaries rarely meet.
//
// Safe for concurrent use; the only state is the per-process counter of
// ports handed out.
package testnet
