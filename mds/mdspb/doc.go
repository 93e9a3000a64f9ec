// Package mdspb holds the Go code generated from proto/basalt/mds/v1 (make
// proto): the metadata server's gRPC API (mds.proto) and the records the
// MDS stores (state.proto, internal to package mds). Do not edit the
// generated files.
package mdspb
