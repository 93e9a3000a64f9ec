package master

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors of the State and the Server. Test with errors.Is; across gRPC
// they become the status codes of wireCodes.
var (
	// ErrInvalidConfig: a Config field is invalid.
	ErrInvalidConfig = errors.New("rss master: invalid config")
	// ErrInvalidArgument: a request field is missing or out of range.
	ErrInvalidArgument = errors.New("rss master: invalid argument")
	// ErrAppNotFound: no live application has that id (never registered,
	// unregistered, or its lease expired).
	ErrAppNotFound = errors.New("rss master: application not found")
	// ErrUnauthenticated: the token does not match the application's, or
	// the call carries no application id or token.
	ErrUnauthenticated = errors.New("rss master: wrong or missing application token")
	// ErrAppExists: RegisterApplication of an existing id without its
	// token.
	ErrAppExists = errors.New("rss master: application already registered")
	// ErrShuffleNotFound: the application has no shuffle with that id.
	ErrShuffleNotFound = errors.New("rss master: shuffle not found")
	// ErrShuffleExists: RegisterShuffle of an existing id with another
	// shape, or with another run (RegisterShuffle.Run).
	ErrShuffleExists = errors.New("rss master: shuffle already registered with another shape or run")
	// ErrPartitionNotFound: a partition index outside the shuffle.
	ErrPartitionNotFound = errors.New("rss master: partition not found")
	// ErrCommitted: the shuffle is committed, so it takes no new
	// locations or map winners.
	ErrCommitted = errors.New("rss master: shuffle committed")
	// ErrNoWorkers: no live worker can take a partition.
	ErrNoWorkers = errors.New("rss master: no usable worker")
	// ErrCommitFailed: a worker holding a partition's only copy failed to
	// commit; retry CommitShuffle.
	ErrCommitFailed = errors.New("rss master: commit failed")
	// ErrShuffleChanged: the shuffle got a new location while it was
	// being committed; retry CommitShuffle.
	ErrShuffleChanged = errors.New("rss master: shuffle changed during commit")
	// ErrClosed: the server was closed.
	ErrClosed = errors.New("rss master: server closed")
)

// wireCodes maps each sentinel to the gRPC code the server returns.
var wireCodes = []struct {
	err  error
	code codes.Code
}{
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrAppNotFound, codes.NotFound},
	{ErrUnauthenticated, codes.Unauthenticated},
	{ErrAppExists, codes.AlreadyExists},
	{ErrShuffleNotFound, codes.NotFound},
	{ErrShuffleExists, codes.AlreadyExists},
	{ErrPartitionNotFound, codes.NotFound},
	{ErrCommitted, codes.FailedPrecondition},
	{ErrNoWorkers, codes.Unavailable},
	{ErrCommitFailed, codes.Unavailable},
	{ErrShuffleChanged, codes.Aborted},
	{ErrClosed, codes.Unavailable},
}

// toStatus maps err to the gRPC status error the server returns: its
// sentinel's code, Unavailable for a NotLeaderError, Canceled or
// DeadlineExceeded for context errors, Internal for anything else.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if nl := (*NotLeaderError)(nil); errors.As(err, &nl) {
		return status.Error(codes.Unavailable, err.Error())
	}
	for _, w := range wireCodes {
		if errors.Is(err, w.err) {
			return status.Error(w.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}
