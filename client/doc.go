// Package client will be the Go library that opens a volume, splits I/O by
// chunk, caches segment maps and copyset leaders, and retries on leader
// changes.
//
// Not implemented yet: this package is part of the repository skeleton and
// is built by the block storage core issue (#3). It holds no code.
package client
