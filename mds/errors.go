package mds

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/mds/mdspb"
)

// Errors returned by the Server and, through FromStatus, by its clients.
// Test with errors.Is.
var (
	// ErrInvalidConfig: a Config field is invalid, or does not match the
	// geometry the store was created with.
	ErrInvalidConfig = errors.New("mds: invalid config")
	// ErrInvalidArgument: a request field is missing or malformed (see the
	// message); the more specific errors below are used where they apply.
	ErrInvalidArgument = errors.New("mds: invalid argument")
	// ErrInvalidName: a volume name is not 1 to 128 characters of
	// [A-Za-z0-9._-].
	ErrInvalidName = errors.New("mds: invalid volume name")
	// ErrInvalidSize: a volume size is zero, not a multiple of 4096 or
	// above MaxVolumeSize.
	ErrInvalidSize = errors.New("mds: invalid volume size")
	// ErrShrink: a resize asked for a smaller size; volumes only grow.
	ErrShrink = errors.New("mds: volumes cannot shrink")
	// ErrVolumeNotFound: no volume has that name.
	ErrVolumeNotFound = errors.New("mds: volume not found")
	// ErrVolumeExists: a volume with that name already exists.
	ErrVolumeExists = errors.New("mds: volume already exists")
	// ErrOutOfRange: a segment index at or beyond the end of the volume.
	ErrOutOfRange = errors.New("mds: segment out of range")
	// ErrWriterExists: another client holds the volume's writer lease.
	// The error is a *WriterExistsError naming the holder.
	ErrWriterExists = errors.New("mds: volume has a writer")
	// ErrSessionInvalid: the writer session is unknown, expired, closed or
	// was taken over by a forced open (fenced).
	ErrSessionInvalid = errors.New("mds: writer session invalid")
	// ErrNoPool: the pool does not exist yet (too few chunkservers or
	// zones have registered), so no segment can be allocated.
	ErrNoPool = errors.New("mds: no pool yet")
	// ErrChunkserverNotFound: a heartbeat or re-registration named an ID
	// the MDS never assigned; the chunkserver must register anew.
	ErrChunkserverNotFound = errors.New("mds: chunkserver not found")
	// ErrCopysetNotFound: GetCopysets named a copyset that does not exist.
	ErrCopysetNotFound = errors.New("mds: copyset not found")
	// ErrClosed: the server was closed.
	ErrClosed = errors.New("mds: server closed")
	// ErrKeyNotFound is returned by KV.Get for a missing key. It never
	// leaves the server.
	ErrKeyNotFound = errors.New("mds: key not found")
)

// WriterExistsError reports that a writer lease on Volume is held by
// another session. It matches ErrWriterExists with errors.Is.
type WriterExistsError struct {
	// Volume is the volume's name.
	Volume string
	// Holder is the client string the holder gave when it opened.
	Holder string
}

func (e *WriterExistsError) Error() string {
	return fmt.Sprintf("%v: volume %q is held by writer %q (open with force to take it over)",
		ErrWriterExists, e.Volume, e.Holder)
}

// Is makes errors.Is(e, ErrWriterExists) true.
func (e *WriterExistsError) Is(target error) bool { return target == ErrWriterExists }

// wireErrors maps each sentinel to its gRPC code and to the reason carried
// in mdspb.ErrorDetail. Reasons are part of the API: never change one.
var wireErrors = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrInvalidArgument, codes.InvalidArgument, "INVALID_ARGUMENT"},
	{ErrInvalidName, codes.InvalidArgument, "INVALID_NAME"},
	{ErrInvalidSize, codes.InvalidArgument, "INVALID_SIZE"},
	{ErrShrink, codes.InvalidArgument, "SHRINK"},
	{ErrVolumeNotFound, codes.NotFound, "VOLUME_NOT_FOUND"},
	{ErrVolumeExists, codes.AlreadyExists, "VOLUME_EXISTS"},
	{ErrOutOfRange, codes.OutOfRange, "OUT_OF_RANGE"},
	{ErrWriterExists, codes.FailedPrecondition, "WRITER_EXISTS"},
	{ErrSessionInvalid, codes.FailedPrecondition, "SESSION_INVALID"},
	{ErrNoPool, codes.Unavailable, "NO_POOL"},
	{ErrChunkserverNotFound, codes.NotFound, "CHUNKSERVER_NOT_FOUND"},
	{ErrCopysetNotFound, codes.NotFound, "COPYSET_NOT_FOUND"},
	{ErrClosed, codes.Unavailable, "CLOSED"},
}

// toStatus maps err to the gRPC status error the server returns: the code
// of its sentinel and an mdspb.ErrorDetail naming it, codes.Canceled or
// DeadlineExceeded for context errors, codes.Internal for anything else.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	for _, w := range wireErrors {
		if errors.Is(err, w.err) {
			return withDetail(status.New(w.code, err.Error()), detailOf(err, w.reason))
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// detailOf builds the ErrorDetail for err, whose sentinel has reason.
func detailOf(err error, reason string) *mdspb.ErrorDetail {
	d := &mdspb.ErrorDetail{Reason: reason}
	var we *WriterExistsError
	if errors.As(err, &we) {
		d.Holder, d.Volume = we.Holder, we.Volume
	}
	return d
}

// withDetail attaches d to st; should that fail, st is returned as is.
func withDetail(st *status.Status, d *mdspb.ErrorDetail) error {
	if ds, err := st.WithDetails(d); err == nil {
		st = ds
	}
	return st.Err()
}

// FromStatus maps an error returned by an MDS RPC back to the package's
// errors, for clients: when the status carries an mdspb.ErrorDetail, the
// result matches its sentinel with errors.Is, keeps the server's message
// and still yields the status to status.FromError; for ErrWriterExists it
// is a *WriterExistsError naming the holder. Any other error (transport
// failures, context errors, codes.Internal), and nil, is returned
// unchanged.
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if err == nil || !ok {
		return err
	}
	d := findDetail(st)
	if d == nil {
		return err
	}
	if d.GetReason() == "WRITER_EXISTS" {
		return &WriterExistsError{Volume: d.GetVolume(), Holder: d.GetHolder()}
	}
	for _, w := range wireErrors {
		if w.reason == d.GetReason() {
			return &remoteError{sentinel: w.err, st: st}
		}
	}
	return err
}

// findDetail returns the ErrorDetail of st, or nil.
func findDetail(st *status.Status) *mdspb.ErrorDetail {
	for _, d := range st.Details() {
		if ed, ok := d.(*mdspb.ErrorDetail); ok {
			return ed
		}
	}
	return nil
}

// remoteError is an error received from the MDS, mapped to its sentinel.
type remoteError struct {
	sentinel error
	st       *status.Status
}

func (e *remoteError) Error() string              { return e.st.Message() }
func (e *remoteError) Unwrap() error              { return e.sentinel }
func (e *remoteError) GRPCStatus() *status.Status { return e.st }
