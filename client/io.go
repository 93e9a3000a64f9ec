package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"basalt/chunkserver/chunkserverpb"
)

// ReadAt reads len(p) bytes at off into p. It returns len(p) and nil, or the
// number of bytes read without a gap from off and the error. Bytes never
// written read as zeros; a segment never written is answered without
// contacting a chunkserver. A range outside [0, Size) fails with
// ErrOutOfRange before any RPC; an empty p at 0 <= off <= Size succeeds.
// Leader changes, timeouts and lost connections are retried for up to
// Options.RetryDeadline, then the call fails with ErrUnavailable. When ctx
// ends the call returns ctx.Err().
func (v *Volume) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := v.do(ctx, "read", off, int64(len(p)), func(ctx context.Context, s *retryState, pt part) error {
		return v.readPart(ctx, s, pt, p[pt.bufOff:pt.bufOff+pt.n])
	})
	return int(n), err
}

// WriteAt writes p at off. It returns len(p) and nil once every byte is on
// a majority of its copyset's replicas (durable: Flush adds nothing), or the
// number of bytes written without a gap from off and the error. It fails
// with ErrReadOnly on a reader and ErrLeaseLost once the writer lease is
// lost. Out-of-range, empty, retry and ctx behaviour are as for ReadAt; a
// write whose ctx ended may or may not have been applied, as with a disk.
// Concurrent overlapping writes land in no defined order.
func (v *Volume) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := v.do(ctx, "write", off, int64(len(p)), func(ctx context.Context, s *retryState, pt part) error {
		return v.writePart(ctx, s, pt, p[pt.bufOff:pt.bufOff+pt.n])
	})
	return int(n), err
}

// Discard makes [off, off+length) read as zeros. Segments never written are
// skipped. Errors, retries and ctx are as for WriteAt.
func (v *Volume) Discard(ctx context.Context, off, length int64) error {
	_, err := v.do(ctx, "discard", off, length, v.discardPart)
	return err
}

// Flush returns when every write and discard of this Volume that was in
// flight when Flush was called has returned, or ctx.Err() when ctx ends
// first. Acknowledged writes are already durable on a quorum, so Flush has
// nothing else to do.
func (v *Volume) Flush(ctx context.Context) error {
	end, err := v.calls.begin(false)
	if err != nil {
		return err
	}
	defer end()
	return waitAll(ctx, v.calls.pending(true))
}

// partFunc performs one part of a call.
type partFunc func(ctx context.Context, s *retryState, pt part) error

// do runs one call: it checks the Volume's state and the range, splits the
// range by chunk and runs the parts, and records metrics.
func (v *Volume) do(ctx context.Context, op string, off, n int64, fn partFunc) (done int64, err error) {
	start := time.Now()
	write := op != "read"
	end, err := v.calls.begin(write)
	if err != nil {
		return 0, err
	}
	defer end()
	if err := v.admit(write, off, n); err != nil {
		return 0, err
	}
	done, err = v.run(ctx, off, n, fn)
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	v.metrics.observe(op, start, done, err)
	return done, v.noteLeaseLost(err)
}

// admit checks that a call may start.
func (v *Volume) admit(write bool, off, n int64) error {
	switch {
	case write && v.session == 0:
		return ErrReadOnly
	case write && v.leaseLost.Load():
		return ErrLeaseLost
	}
	return v.geo.check(off, n)
}

// noteLeaseLost makes the Volume read-only if err says the MDS refused its
// session.
func (v *Volume) noteLeaseLost(err error) error {
	if err != nil && errors.Is(err, ErrLeaseLost) {
		v.loseLease(err)
	}
	return err
}

// run splits [off, off+n) into parts and runs fn on each, at most
// Options.MaxParallel at once, all within one RetryDeadline. After the
// first error it starts no more parts and cancels the others. It returns
// how many bytes from off completed without a gap, and the first error.
func (v *Volume) run(ctx context.Context, off, n int64, fn partFunc) (int64, error) {
	parts := v.geo.split(off, n)
	deadline := time.Now().Add(v.opts.RetryDeadline)
	switch len(parts) {
	case 0:
		return 0, nil
	case 1:
		if err := fn(ctx, newRetryState(deadline), parts[0]); err != nil {
			return 0, err
		}
		return n, nil
	}
	return v.runParallel(ctx, parts, deadline, fn)
}

// runParallel is run for more than one part.
func (v *Volume) runParallel(ctx context.Context, parts []part, deadline time.Time, fn partFunc) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make([]bool, len(parts))
	var next atomic.Int64
	var first firstError
	var wg sync.WaitGroup
	for range min(v.opts.MaxParallel, len(parts)) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(parts)) && ctx.Err() == nil; i = next.Add(1) - 1 {
				if err := fn(ctx, newRetryState(deadline), parts[i]); err != nil {
					first.set(err)
					cancel()
					return
				}
				done[i] = true
			}
		})
	}
	wg.Wait()
	return prefix(parts, done), first.get()
}

// prefix is the number of bytes covered by the done parts before the
// first part not done.
func prefix(parts []part, done []bool) int64 {
	var n int64
	for i, p := range parts {
		if !done[i] {
			break
		}
		n += p.n
	}
	return n
}

// firstError keeps the first error set.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// readPart reads one part into buf.
func (v *Volume) readPart(ctx context.Context, s *retryState, pt part, buf []byte) error {
	ref, err := v.chunk(ctx, s, pt, segRead)
	if err != nil || ref == nil {
		clear(buf)
		return err
	}
	err = v.send(ctx, s, ref.copyset, func(ctx context.Context, c chunkserverpb.ChunkserverClient) error {
		resp, err := c.Read(ctx, &chunkserverpb.ReadRequest{Copyset: ref.copyset, Chunk: ref.chunk,
			Offset: uint64(pt.chunkOff), Length: uint64(pt.n)})
		if err == nil {
			clear(buf[copy(buf, resp.GetData()):])
		}
		return err
	})
	return wrapPart(err, "reading", ref)
}

// writePart writes one part from buf.
func (v *Volume) writePart(ctx context.Context, s *retryState, pt part, buf []byte) error {
	ref, err := v.chunk(ctx, s, pt, segWrite)
	if err != nil {
		return err
	}
	if ref == nil {
		return fmt.Errorf("client: MDS did not allocate segment %d", pt.seg)
	}
	err = v.send(ctx, s, ref.copyset, func(ctx context.Context, c chunkserverpb.ChunkserverClient) error {
		_, err := c.Write(ctx, &chunkserverpb.WriteRequest{Copyset: ref.copyset, Chunk: ref.chunk,
			Offset: uint64(pt.chunkOff), Data: buf})
		return err
	})
	return wrapPart(err, "writing", ref)
}

// discardPart discards one part; a part of a segment never written is
// already zeros.
func (v *Volume) discardPart(ctx context.Context, s *retryState, pt part) error {
	ref, err := v.chunk(ctx, s, pt, segDiscard)
	if err != nil || ref == nil {
		return err
	}
	err = v.send(ctx, s, ref.copyset, func(ctx context.Context, c chunkserverpb.ChunkserverClient) error {
		_, err := c.Discard(ctx, &chunkserverpb.DiscardRequest{Copyset: ref.copyset, Chunk: ref.chunk,
			Offset: uint64(pt.chunkOff), Length: uint64(pt.n)})
		return err
	})
	return wrapPart(err, "discarding", ref)
}

// chunk returns where a part's chunk lives, or nil if its segment was
// never written.
func (v *Volume) chunk(ctx context.Context, s *retryState, pt part, mode segMode) (*chunkRef, error) {
	seg, err := v.segment(ctx, s, pt.seg, mode)
	if err != nil || !seg.allocated {
		return nil, err
	}
	return &seg.chunks[pt.chunk], nil
}

// wrapPart adds the chunk to a part's error.
func wrapPart(err error, verb string, ref *chunkRef) error {
	if err == nil || isContextErr(err) {
		return err
	}
	return fmt.Errorf("%s chunk %d (copyset %d): %w", verb, ref.chunk, ref.copyset, err)
}
