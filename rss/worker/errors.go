package worker

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the Worker. Test with errors.Is; across gRPC each is the
// status code listed (see toStatus), with the error's text as message.
var (
	// ErrInvalidConfig: a Config field is invalid.
	ErrInvalidConfig = errors.New("worker: invalid config")
	// ErrNoApp: the call carries no application id in the
	// "basalt-rss-app" metadata (Unauthenticated).
	ErrNoApp = errors.New("worker: no application id in the call's metadata")
	// ErrInvalidArgument: a request field is missing or malformed
	// (InvalidArgument).
	ErrInvalidArgument = errors.New("worker: invalid argument")
	// ErrCommitted: a push to a partition of a shuffle that is committed or
	// being committed (FailedPrecondition).
	ErrCommitted = errors.New("worker: partition already committed")
	// ErrNotCommitted: a fetch of a partition that is not committed yet
	// (FailedPrecondition).
	ErrNotCommitted = errors.New("worker: partition not committed")
	// ErrPartitionNotFound: this worker has no such partition epoch, or it
	// was deleted (NotFound).
	ErrPartitionNotFound = errors.New("worker: partition not found")
	// ErrPartitionLost: the partition file failed (an I/O error while
	// writing or syncing it), so it was not committed and acknowledged
	// batches may be lost; read the replica (DataLoss).
	ErrPartitionLost = errors.New("worker: partition file lost")
	// ErrChecksum: a batch's data does not match its CRC-32C, on push or
	// on disk (DataLoss). On disk the error is a *CorruptError.
	ErrChecksum = errors.New("worker: checksum mismatch")
	// ErrMemoryLimit: accepting the batch would exceed
	// Config.MemoryLimitBytes; back off and retry (ResourceExhausted).
	ErrMemoryLimit = errors.New("worker: memory limit reached")
	// ErrAppMemoryLimit: accepting the batch would exceed the
	// application's share, Config.AppMemoryLimitBytes; back off and retry
	// (ResourceExhausted).
	ErrAppMemoryLimit = errors.New("worker: per-application memory limit reached")
	// ErrDiskFull: the partition file's disk is full; the batches of the
	// failed write were not stored (ResourceExhausted).
	ErrDiskFull = errors.New("worker: disk full")
	// ErrReplica: forwarding to the replica failed; the error is a
	// *ReplicaError (Unavailable, or the replica's own code when it
	// refused the batch).
	ErrReplica = errors.New("worker: replica failed")
	// ErrDraining: the worker is shutting down and takes no more pushes
	// (Unavailable).
	ErrDraining = errors.New("worker: shutting down")
	// ErrDecommissioning: the worker is decommissioning and takes no new
	// Push or Replicate streams; push to another location (Unavailable).
	ErrDecommissioning = errors.New("worker: worker is decommissioning")
	// ErrClosed: the worker is closed (Unavailable).
	ErrClosed = errors.New("worker: closed")
)

// CorruptError reports a stored batch that fails verification: its data
// does not match its CRC, its header does not match the index, or the
// file is shorter than the index says. It matches ErrChecksum.
type CorruptError struct {
	App                       string
	Shuffle, Partition, Epoch int32
	// Offset is the batch's offset in the partition file.
	Offset int64
	// Path is the partition file.
	Path string
	// Reason says what did not match.
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%v: app %s shuffle %d partition %d epoch %d: batch at offset %d of %s: %s",
		ErrChecksum, e.App, e.Shuffle, e.Partition, e.Epoch, e.Offset, e.Path, e.Reason)
}

// Is makes errors.Is(e, ErrChecksum) true.
func (e *CorruptError) Is(target error) bool { return target == ErrChecksum }

// ReplicaError reports that the replica at Addr did not take a batch.
// It matches ErrReplica.
type ReplicaError struct {
	Addr string
	Err  error
}

func (e *ReplicaError) Error() string {
	return fmt.Sprintf("%v: replica %s: %v", ErrReplica, e.Addr, e.Err)
}

// Unwrap returns the replica's error.
func (e *ReplicaError) Unwrap() error { return e.Err }

// Is makes errors.Is(e, ErrReplica) true.
func (e *ReplicaError) Is(target error) bool { return target == ErrReplica }

// code is the status code a client sees: the replica's own code when the
// replica refused the batch for a reason the client acts on, Unavailable
// when the replica could not be reached or failed otherwise.
func (e *ReplicaError) code() codes.Code {
	switch c := status.Code(e.Err); c {
	case codes.ResourceExhausted, codes.FailedPrecondition, codes.DataLoss, codes.InvalidArgument, codes.NotFound:
		return c
	}
	return codes.Unavailable
}

// wireCodes maps each sentinel to its gRPC status code.
var wireCodes = []struct {
	err  error
	code codes.Code
}{
	{ErrNoApp, codes.Unauthenticated},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrCommitted, codes.FailedPrecondition},
	{ErrNotCommitted, codes.FailedPrecondition},
	{ErrPartitionNotFound, codes.NotFound},
	{ErrChecksum, codes.DataLoss},
	{ErrPartitionLost, codes.DataLoss},
	{ErrMemoryLimit, codes.ResourceExhausted},
	{ErrAppMemoryLimit, codes.ResourceExhausted},
	{ErrDiskFull, codes.ResourceExhausted},
	{ErrDraining, codes.Unavailable},
	{ErrDecommissioning, codes.Unavailable},
	{ErrClosed, codes.Unavailable},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// toStatus turns an error of the Worker into the gRPC status error a
// handler returns. Errors that match no sentinel keep their status when
// they carry one (from a stream) and are Internal otherwise.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if re := (*ReplicaError)(nil); errors.As(err, &re) {
		return status.Error(re.code(), err.Error())
	}
	for _, w := range wireCodes {
		if errors.Is(err, w.err) {
			return status.Error(w.code, err.Error())
		}
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}
