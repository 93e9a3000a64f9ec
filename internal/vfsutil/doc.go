// Package vfsutil holds the few durable-filesystem idioms Basalt repeats,
// on Pebble's vfs.FS (so tests can run them on a crashable in-memory FS):
// creating a directory durably, syncing a directory, and replacing a small
// file atomically and durably. Nothing here buffers or caches.
package vfsutil
