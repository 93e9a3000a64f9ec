//go:build linux

// Package main is attachtest, the guest-side program of package kernel's
// VM test (vm_test.go): it connects an in-memory NBD export to the kernel's
// nbd driver through kernel.Connect and a socketpair, serving it in-process
// with nbd.Server.ServeTransmission, and wraps Status, List, Disconnect
// and an O_DIRECT read in subcommands that print one greppable result line
// each.
//
// It is a test tool, not `basalt nbd attach`: it keeps no state, the
// export lives in memory and dies with the process, and it never
// reconnects. Each invocation is one process; serve blocks until the
// kernel disconnects the device or the process gets SIGINT/SIGTERM.
package main
