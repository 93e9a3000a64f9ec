// Package mds will be the metadata server: topology (zones, servers,
// chunkservers, pools), volumes and segments, copyset placement, writer
// sessions and the scheduler, with its state replicated through raft.
//
// Not implemented yet: this package is part of the repository skeleton and
// is built by the block storage core issue (#3). It holds no code.
package mds
