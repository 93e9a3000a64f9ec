package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

const (
	// firstBackoff and maxBackoff bound the pause between retries, which
	// doubles after every pause.
	firstBackoff = 10 * time.Millisecond
	maxBackoff   = 500 * time.Millisecond
	// maxQuickRedirects is how many NotLeader redirects a call follows
	// without pausing; after that it pauses as for a failure, so that two
	// replicas naming each other cannot make it spin.
	maxQuickRedirects = 3
	// refreshEvery is how many retryable failures on one copyset make the
	// call refresh the copyset's members and leader from the MDS.
	refreshEvery = 3
)

// retryState is the progress of one part's (or one MDS call's) retries.
type retryState struct {
	deadline time.Time
	backoff  time.Duration // the last pause, 0 before the first
	failures int           // retryable failures so far
	quick    int           // redirects followed since the last pause
}

func newRetryState(deadline time.Time) *retryState {
	return &retryState{deadline: deadline}
}

// pause waits before the next attempt after a retryable failure (cause):
// the next backoff step, cut at the deadline. It returns ctx.Err() if ctx
// ends first, and an error wrapping ErrUnavailable and cause if the
// deadline has passed.
func (s *retryState) pause(ctx context.Context, cause error) error {
	s.quick = 0
	s.backoff = nextBackoff(s.backoff)
	wait := min(s.backoff, time.Until(s.deadline))
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	if !time.Now().Before(s.deadline) {
		return giveUp(cause)
	}
	return nil
}

// giveUp is the error of a call whose retry deadline passed.
func giveUp(cause error) error {
	if errors.Is(cause, ErrUnavailable) {
		return fmt.Errorf("giving up at the retry deadline: %w", cause)
	}
	return fmt.Errorf("%w: giving up at the retry deadline: %w", ErrUnavailable, cause)
}

// nextBackoff is the pause after one of d: firstBackoff, then doubling up
// to maxBackoff.
func nextBackoff(d time.Duration) time.Duration {
	return min(max(2*d, firstBackoff), maxBackoff)
}

// attemptTimeout is the timeout of the next attempt: rpc, cut at the
// deadline.
func (s *retryState) attemptTimeout(rpc time.Duration) time.Duration {
	return max(min(rpc, time.Until(s.deadline)), time.Millisecond)
}
