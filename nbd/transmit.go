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
	if errno != 0 {
		s.sendReply(req.cookie, errno, nil)
		return
	}
	if req.typ == cmdRead {
		s.read(ctx, b, req)
		return
	}
	err := s.mutate(ctx, b, req, payload)
	if err == nil && req.flags&cmdFlagFUA != 0 {
		err = b.Flush(ctx)
	}
	s.sendReply(req.cookie, errnoOf(err), nil)
}

// read answers a READ.
func (s *session) read(ctx context.Context, b Backend, req request) {
	buf := make([]byte, req.length)
	n, err := b.ReadAt(ctx, buf, int64(req.offset))
	if n == len(buf) && errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		s.sendReply(req.cookie, errnoOf(err), nil)
		return
	}
	s.sendReply(req.cookie, 0, buf)
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

// sendReply writes a simple reply, with data for a successful READ. A
// failed write is ignored: the read loop sees the broken connection.
func (s *session) sendReply(cookie uint64, errno uint32, data []byte) {
	bufs := net.Buffers{appendSimpleReply(nil, errno, cookie), data}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, _ = bufs.WriteTo(s.w)
}
