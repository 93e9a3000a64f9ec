package client

import (
	"context"
	"errors"
	"sync"
)

// flights lets concurrent callers that need the same key share one call
// (like x/sync/singleflight). The first caller runs the call with its own
// context; the others wait for it or for their own context. If the shared
// call failed only because the first caller's context ended, a waiter whose
// context is still live runs the call again itself.
type flights[K comparable, T any] struct {
	mu struct {
		sync.Mutex
		m map[K]*flight[T]
	}
}

// flight is one call in progress; val and err are set before done closes.
type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// do returns the result of fn for key, sharing a call in progress.
func (g *flights[K, T]) do(ctx context.Context, key K, fn func(context.Context) (T, error)) (T, error) {
	for {
		f, first := g.join(key)
		if first {
			f.val, f.err = fn(ctx)
			g.land(key, f)
			return f.val, f.err
		}
		select {
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		case <-f.done:
		}
		if !isContextErr(f.err) {
			return f.val, f.err
		}
	}
}

// join returns the flight for key, and whether the caller started it.
func (g *flights[K, T]) join(key K) (*flight[T], bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.mu.m[key]; ok {
		return f, false
	}
	if g.mu.m == nil {
		g.mu.m = map[K]*flight[T]{}
	}
	f := &flight[T]{done: make(chan struct{})}
	g.mu.m[key] = f
	return f, true
}

// land publishes f's result to its waiters.
func (g *flights[K, T]) land(key K, f *flight[T]) {
	g.mu.Lock()
	delete(g.mu.m, key)
	g.mu.Unlock()
	close(f.done)
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
