// Package chunkserverpb holds the Go code generated from
// proto/basalt/chunkserver/v1/chunkserver.proto (make proto): the
// chunkserver data API. Do not edit the generated files.
package chunkserverpb
