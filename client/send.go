package client

import (
	"context"
	"errors"

	"basalt/chunkserver/chunkserverpb"
)

// partCall is one chunkserver RPC for one part.
type partCall func(context.Context, chunkserverpb.ChunkserverClient) error

// send runs call against the leader of copyset id and retries until it
// succeeds, fails for good, or s's deadline passes:
//
//   - NotLeader naming a leader: switch to it and retry at once (after
//     maxQuickRedirects in a row, pause as for a failure);
//   - NotLeader without an address, Unavailable, DeadlineExceeded,
//     ResourceExhausted, Aborted, lost connections, or the MDS unreachable
//     while loading the copyset: move to the next member and pause (10ms,
//     doubling to 500ms); every refreshEvery failures, reload the copyset
//     from the MDS;
//   - NotFound (the copyset is not on that chunkserver): the same, and
//     reload the copyset at once;
//   - anything else (OutOfRange, InvalidArgument, ...): return at once,
//     translated by mapStatus.
//
// When ctx ends, send returns ctx.Err().
func (v *Volume) send(ctx context.Context, s *retryState, id uint64, call partCall) error {
	for {
		target, err := v.leader(ctx, s, id)
		if err == nil {
			if err = v.attempt(ctx, s, target, call); err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := v.afterFailure(ctx, s, id, target, err); err != nil {
			return err
		}
	}
}

// afterFailure updates the copyset's leader guess after err from target
// and waits if the next attempt must wait. A non-nil result ends the call.
func (v *Volume) afterFailure(ctx context.Context, s *retryState, id uint64, target member, err error) error {
	verdict, nl := classify(err)
	switch verdict {
	case fail:
		return mapStatus(err)
	case redirect:
		v.metrics.redirects.Inc()
		if v.sets.redirect(id, target, nl) && s.quick < maxQuickRedirects {
			s.quick++
			return nil
		}
	case retry, stale:
		v.metrics.retries.Inc()
		v.sets.skip(id, target)
		if s.failures++; verdict == stale || s.failures%refreshEvery == 0 {
			v.refresh(ctx, s, id)
		}
	}
	return s.pause(ctx, err)
}

// refresh reloads copyset id from the MDS. A failure is ignored: the
// cached members may still answer.
func (v *Volume) refresh(ctx context.Context, s *retryState, id uint64) {
	_ = v.loadCopyset(ctx, s, id)
}

// attempt runs call once against m, bounded by Options.RPCTimeout and the
// deadline.
func (v *Volume) attempt(ctx context.Context, s *retryState, m member, call partCall) error {
	c, err := v.conns.client(m.addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.attemptTimeout(v.opts.RPCTimeout))
	defer cancel()
	return call(ctx, c)
}

// retryMDS runs an MDS call until it succeeds, fails with an error other
// than ErrUnavailable, or s's deadline passes. When ctx ends it returns
// ctx.Err().
func (v *Volume) retryMDS(ctx context.Context, s *retryState, fn mdsCall, overrides ...meaning) error {
	for {
		err := v.mds.call(ctx, s.attemptTimeout(v.opts.RPCTimeout), fn, overrides...)
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil || !errors.Is(err, ErrUnavailable) {
			return err
		}
		if err := s.pause(ctx, err); err != nil {
			return err
		}
	}
}
