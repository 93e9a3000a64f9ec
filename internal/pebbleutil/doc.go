// Package pebbleutil holds what Basalt's Pebble users (the raft log store
// and the MDS metadata store) share: key-range arithmetic and the adapter
// from log/slog to Pebble's logger. It opens no database itself.
package pebbleutil
