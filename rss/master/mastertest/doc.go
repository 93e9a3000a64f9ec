// Package mastertest holds test doubles for package master: Workers, fake
// worker RPC clients that record the master's Commit and DeleteShuffle
// calls and fail them on demand, and helpers building static worker
// lists. Only tests import it; it does no I/O.
package mastertest
