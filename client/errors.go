package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/chunkserver/chunkserverpb"
)

var (
	// ErrOutOfRange is returned for I/O outside [0, Size) and for an
	// OutOfRange answer from the MDS or a chunkserver.
	ErrOutOfRange = errors.New("client: out of range")
	// ErrUnavailable is returned when a call kept failing with retryable
	// errors (leader changes, timeouts, lost connections) until
	// Options.RetryDeadline passed. The last cause is wrapped too.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrReadOnly is returned by writes and discards on a Volume opened
	// without Options.Writer.
	ErrReadOnly = errors.New("client: volume opened read-only")
	// ErrLeaseLost is returned by writes and discards after the writer
	// session was fenced (another client forced the lease, or the MDS
	// refused a renewal). The Volume still reads; reopen it to write.
	ErrLeaseLost = errors.New("client: writer lease lost")
	// ErrClosed is returned by every method of a closed Volume.
	ErrClosed = errors.New("client: volume closed")
	// ErrInvalidArgument is returned for bad Options or arguments, and for an
	// InvalidArgument answer from the MDS or a chunkserver.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrVolumeNotFound is returned when the MDS does not know the volume.
	ErrVolumeNotFound = errors.New("client: volume not found")
	// ErrWriterExists is returned by Open for a writer when another client
	// holds the volume's writer lease and Options.Force is false. The
	// error's message keeps the MDS's, which names the holder.
	ErrWriterExists = errors.New("client: volume has another writer")
)

// statusError is a gRPC status error translated to one of the package's
// sentinels: errors.Is matches the sentinel, status.Code still reads the
// original code, and the message keeps the server's words.
type statusError struct {
	sentinel error
	cause    error
}

func (e *statusError) Error() string {
	return e.sentinel.Error() + ": " + status.Convert(e.cause).Message()
}

func (e *statusError) Unwrap() []error { return []error{e.sentinel, e.cause} }

// defaultMeaning is what code means in an answer from the MDS or a
// chunkserver unless a call says otherwise; nil means no sentinel.
func defaultMeaning(code codes.Code) error {
	switch code {
	case codes.NotFound:
		return ErrVolumeNotFound
	case codes.OutOfRange:
		return ErrOutOfRange
	case codes.InvalidArgument:
		return ErrInvalidArgument
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return ErrUnavailable
	}
	return nil
}

// A meaning overrides what one status code means for one call.
type meaning struct {
	code codes.Code
	err  error // the sentinel, or nil for none
}

// mapStatus translates a gRPC error to the package's sentinels: the one
// place where status codes get their meaning. overrides replace
// defaultMeaning for one call (FailedPrecondition is ErrWriterExists when
// opening a writer, ErrLeaseLost for calls that carry the session). Errors
// without a status, and codes with no meaning, are returned wrapped as they
// are.
func mapStatus(err error, overrides ...meaning) error {
	st, ok := status.FromError(err)
	if err == nil || !ok {
		return err
	}
	sentinel := defaultMeaning(st.Code())
	for _, m := range overrides {
		if m.code == st.Code() {
			sentinel = m.err
		}
	}
	if sentinel == nil {
		return fmt.Errorf("client: %w", err)
	}
	return &statusError{sentinel: sentinel, cause: err}
}

// A verdict is what the retry loop does after a failed chunkserver call.
type verdict int

const (
	// fail: return the error at once.
	fail verdict = iota
	// retry: try the next member after a backoff.
	retry
	// stale: like retry, and refresh the copyset from the MDS first.
	stale
	// redirect: the answer names another leader (or says it is unknown).
	redirect
)

// classify decides what to do after err from a chunkserver call (or from
// loading the copyset). It returns the NotLeader detail with redirect.
func classify(err error) (verdict, *chunkserverpb.NotLeader) {
	if errors.Is(err, ErrUnavailable) {
		return retry, nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fail, nil
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return retry, nil
	case codes.NotFound: // the copyset is not (or no longer) on that chunkserver
		return stale, nil
	case codes.FailedPrecondition:
		if nl := notLeader(st); nl != nil {
			return redirect, nl
		}
	}
	return fail, nil
}

// notLeader returns the NotLeader detail of st, or nil.
func notLeader(st *status.Status) *chunkserverpb.NotLeader {
	for _, d := range st.Details() {
		if nl, ok := d.(*chunkserverpb.NotLeader); ok {
			return nl
		}
	}
	return nil
}

// sessionLost is what FailedPrecondition means in answers to calls that
// carry the writer session: the MDS no longer honours the session.
func sessionLost() meaning { return meaning{code: codes.FailedPrecondition, err: ErrLeaseLost} }
