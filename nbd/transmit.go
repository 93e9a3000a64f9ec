package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// transmit serves requests on b until the client disconnects or breaks the
// protocol, then waits for the requests in flight. NBD_CMD_DISC returns nil.
func (s *session) transmit(ctx context.Context, b Backend) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, s.srv.cfg.MaxInFlight)
	for {
		req, err := s.readHeader()
		if err != nil {
			return err
		}
		if req.typ == cmdDisconnect {
			return nil
		}
		sem <- struct{}{}
		payload, errno, err := s.readPayload(req, b.Size())
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer func() { <-sem }()
			s.handle(ctx, b, req, payload, errno)
		})
	}
}

// readHeader reads and parses one request header.
func (s *session) readHeader() (request, error) {
	var hdr [requestSize]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return request{}, fmt.Errorf("reading request: %w", err)
	}
	return parseRequest(hdr[:])
}

// readPayload validates req against an export of size bytes and reads the
// data of a WRITE. An invalid WRITE's data is read (or, when too long to
// buffer, discarded) so the stream stays in sync; errno is then not 0.
func (s *session) readPayload(req request, size int64) (payload []byte, errno uint32, err error) {
	errno = req.check(size, s.srv.cfg.MaxRequestBytes)
	if errno == 0 && req.typ == cmdBlockStatus && !s.allocation {
		errno = errInval
	}
	if !req.hasPayload() {
		return nil, errno, nil
	}
	if req.length > s.srv.cfg.MaxRequestBytes {
		_, err = io.CopyN(io.Discard, s.r, int64(req.length))
		return nil, errno, wrapPayloadErr(err)
	}
	payload = make([]byte, req.length)
	_, err = io.ReadFull(s.r, payload)
	return payload, errno, wrapPayloadErr(err)
}

func wrapPayloadErr(err error) error {
	if err != nil {
		return fmt.Errorf("reading write payload: %w", err)
	}
	return nil
}

// handle executes one valid request, or answers errno when it is not 0.
func (s *session) handle(ctx context.Context, b Backend, req request, payload []byte, errno uint32) {
	switch {
	case errno != 0:
		s.sendStatus(req.cookie, errno)
	case req.typ == cmdRead:
		s.read(ctx, b, req)
	case req.typ == cmdBlockStatus:
		s.blockStatus(ctx, b, req)
	default:
		err := s.mutate(ctx, b, req, payload)
		if err == nil && req.flags&cmdFlagFUA != 0 {
			err = b.Flush(ctx)
		}
		s.sendStatus(req.cookie, errnoOf(err))
	}
}

// read answers a READ: a simple reply with the data, or structured chunks
// with holes where the backend reports them.
func (s *session) read(ctx context.Context, b Backend, req request) {
	buf := make([]byte, req.length)
	n, err := b.ReadAt(ctx, buf, int64(req.offset))
	if n == len(buf) && errors.Is(err, io.EOF) {
		err = nil
	}
	switch {
	case err != nil:
		s.sendStatus(req.cookie, errnoOf(err))
	case !s.structured:
		s.sendReply(req.cookie, 0, buf)
	default:
		exts, err := allocated(ctx, b, int64(req.offset), int64(req.length))
		if err != nil {
			exts = nil // unknown allocation: all data
		}
		s.send(readChunks(req.cookie, req.offset, buf, exts))
	}
}

// blockStatus answers a BLOCK_STATUS for base:allocation.
func (s *session) blockStatus(ctx context.Context, b Backend, req request) {
	exts, err := allocated(ctx, b, int64(req.offset), int64(req.length))
	if err != nil {
		s.sendStatus(req.cookie, errnoOf(err))
		return
	}
	if req.flags&cmdFlagReqOne != 0 {
		exts = exts[:1]
	}
	s.send(net.Buffers{blockStatusChunk(req.cookie, exts)})
}

// allocated describes [off, off+length) with the backend's Allocator, or
// as data when it has none. The extents are normalized: at least one, at
// most maxExtents.
func allocated(ctx context.Context, b Backend, off, length int64) ([]Extent, error) {
	a, ok := b.(Allocator)
	if !ok {
		return normalizeExtents(nil, length, maxExtents), nil
	}
	exts, err := a.Allocated(ctx, off, length)
	if err != nil {
		return nil, fmt.Errorf("getting allocation of [%d, +%d): %w", off, length, err)
	}
	return normalizeExtents(exts, length, maxExtents), nil
}

// mutate runs a WRITE, FLUSH, TRIM or WRITE_ZEROES.
func (s *session) mutate(ctx context.Context, b Backend, req request, payload []byte) error {
	off, length := int64(req.offset), int64(req.length)
	switch {
	case req.typ == cmdWrite:
		_, err := b.WriteAt(ctx, payload, off)
		return err
	case req.typ == cmdFlush:
		return b.Flush(ctx)
	case req.typ == cmdWriteZeroes && req.flags&cmdFlagNoHole != 0:
		return writeZeroes(ctx, b, off, length)
	default: // TRIM, or WRITE_ZEROES that may punch holes
		return b.Discard(ctx, off, length)
	}
}

// writeZeroes writes zeros over the range without discarding it.
func writeZeroes(ctx context.Context, b Backend, off, length int64) error {
	zeros := make([]byte, min(length, zeroBufSize))
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if _, err := b.WriteAt(ctx, zeros[:n], off); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// errnoOf maps a backend error to the NBD error sent to the client.
func errnoOf(err error) uint32 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrOutOfRange):
		return errInval
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errShutdown
	default:
		return errIO
	}
}

// sendStatus answers a request that carries no data with errno: a simple
// reply, or with structured replies a NONE or ERROR chunk flagged DONE.
func (s *session) sendStatus(cookie uint64, errno uint32) {
	if s.structured {
		s.send(net.Buffers{doneChunk(cookie, errno)})
		return
	}
	s.sendReply(cookie, errno, nil)
}

// sendReply writes a simple reply, with data for a successful READ.
func (s *session) sendReply(cookie uint64, errno uint32, data []byte) {
	bufs := net.Buffers{appendSimpleReply(nil, errno, cookie)}
	if len(data) > 0 { // a zero-length write blocks on some conns (net.Pipe)
		bufs = append(bufs, data)
	}
	s.send(bufs)
}

// send writes the whole answer to one request at once. A failed write is
// ignored: the read loop sees the broken connection.
func (s *session) send(bufs net.Buffers) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, _ = bufs.WriteTo(s.w)
}
