// Package mdspb holds the Go code generated from
// proto/basalt/mds/v1/mds.proto (make proto): the metadata server's gRPC
// API. Do not edit the generated files.
package mdspb
