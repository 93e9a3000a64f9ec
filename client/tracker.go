package client

import (
	"context"
	"sync"
)

// tracker knows the calls in flight on a Volume, so that Flush can wait for
// the writes and Close for everything.
type tracker struct {
	mu struct {
		sync.Mutex
		closed bool
		next   uint64
		calls  map[uint64]tracked
	}
}

// tracked is one call in flight; done closes when it returns.
type tracked struct {
	write bool
	done  chan struct{}
}

// begin registers a call. It fails with ErrClosed once close has begun;
// otherwise the caller must call end when it returns.
func (t *tracker) begin(write bool) (end func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil, ErrClosed
	}
	if t.mu.calls == nil {
		t.mu.calls = map[uint64]tracked{}
	}
	id, c := t.mu.next, tracked{write: write, done: make(chan struct{})}
	t.mu.next++
	t.mu.calls[id] = c
	return func() {
		t.mu.Lock()
		delete(t.mu.calls, id)
		t.mu.Unlock()
		close(c.done)
	}, nil
}

// pending returns the done channels of the calls in flight now (only
// writes if writesOnly).
func (t *tracker) pending(writesOnly bool) []chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pendingLocked(writesOnly)
}

// pendingLocked is pending.
// REQUIRES: t.mu held.
func (t *tracker) pendingLocked(writesOnly bool) []chan struct{} {
	var out []chan struct{}
	for _, c := range t.mu.calls {
		if c.write || !writesOnly {
			out = append(out, c.done)
		}
	}
	return out
}

// close refuses new calls and returns the calls in flight. It reports
// false if close had been called already.
func (t *tracker) close() ([]chan struct{}, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil, false
	}
	t.mu.closed = true
	return t.pendingLocked(false), true
}

// waitAll waits until every channel is closed or ctx ends.
func waitAll(ctx context.Context, chans []chan struct{}) error {
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
