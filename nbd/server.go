package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Config configures a Server. The zero value of each field but Exports
// means its default; see DefaultConfig.
type Config struct {
	// Exports resolves the names clients ask for. Required.
	Exports Exports
	// MaxRequestBytes is the largest READ or WRITE payload accepted, in
	// bytes; larger requests fail with NBD_EOVERFLOW. Zero means 32 MiB.
	MaxRequestBytes uint32
	// MaxInFlight is how many requests of one connection run at once; the
	// connection stops reading until one finishes. Zero means 16.
	MaxInFlight int
	// HandshakeTimeout bounds the whole handshake of a connection. Zero
	// means 30 s.
	HandshakeTimeout time.Duration
	// Logger receives connection-level events (never one per request). Nil
	// means discard.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in and no
// Exports.
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes:  32 << 20,
		MaxInFlight:      16,
		HandshakeTimeout: 30 * time.Second,
		Logger:           slog.New(slog.DiscardHandler),
	}
}

// ErrNoExports is returned by Config.Validate when Exports is nil.
var ErrNoExports = errors.New("nbd: config has no exports")

// Validate reports whether the config can be used.
func (c Config) Validate() error {
	if c.Exports == nil {
		return ErrNoExports
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Server serves exports over NBD. Each connection has its own goroutine, and
// each request of a connection runs in its own goroutine (at most
// Config.MaxInFlight at once), so replies may come out of order.
type Server struct {
	cfg Config
}

// NewServer returns a Server, or the error of cfg.Validate.
func NewServer(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Server{cfg: cfg.withDefaults()}, nil
}

// Serve accepts connections on ln (TCP or unix) until ctx ends or Accept
// fails, then closes ln and every connection, waits for their goroutines
// and returns: nil when ctx ended, the Accept error otherwise. A connection
// that breaks the protocol is closed alone.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			_ = ln.Close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting nbd connection: %w", err)
		}
		wg.Go(func() { s.serveConn(ctx, c) })
	}
}

// serveConn runs one connection from handshake to close.
func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer func() { _ = c.Close() }()
	log := s.cfg.Logger.With("peer", c.RemoteAddr().String())
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	sess := &session{srv: s, r: bufio.NewReader(c), w: c}
	b, name, err := sess.negotiate(ctx)
	if err != nil || b == nil {
		logEnd(log, "handshake", err)
		return
	}
	defer s.release(name, b)
	_ = c.SetDeadline(time.Time{})
	log = log.With("export", name)
	log.Debug("nbd: transmission started")
	logEnd(log, "transmission", sess.transmit(ctx, b))
}

// ServeTransmission serves b on c from the first request on, with no
// handshake and simple replies only: the way the Linux kernel's nbd driver
// talks to the socket it is handed after userspace did the handshake (or,
// as with `basalt nbd attach`, when there is none because both ends are in
// one process). It returns nil after NBD_CMD_DISC, or the error that ended
// the connection (io.EOF wrapped when the peer closed it), and closes c
// when it returns or ctx ends. The caller owns b: it is not released.
// Requests advertise the flags TransmissionFlags returns.
func (s *Server) ServeTransmission(ctx context.Context, c net.Conn, b Backend) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	defer func() { _ = c.Close() }()
	sess := &session{srv: s, r: bufio.NewReader(c), w: c}
	return sess.transmit(ctx, b)
}

// TransmissionFlags returns the NBD transmission flags the server serves b
// with (the same for every backend): HAS_FLAGS, SEND_FLUSH, SEND_FUA,
// SEND_TRIM, SEND_WRITE_ZEROES and CAN_MULTI_CONN. A kernel attach passes
// them to the driver, which has no handshake to learn them from.
func TransmissionFlags(Backend) uint16 { return transmissionFlags }

// release hands b back to the Exports if it wants it (see Releaser).
func (s *Server) release(name string, b Backend) {
	if r, ok := s.cfg.Exports.(Releaser); ok {
		r.Release(name, b)
	}
}

// logEnd logs why a connection phase ended.
func logEnd(log *slog.Logger, phase string, err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, errAborted) {
		log.Debug("nbd: connection closed", "phase", phase)
		return
	}
	log.Info("nbd: connection closed", "phase", phase, "err", err)
}

// session is one connection's protocol state.
type session struct {
	srv      *Server
	r        io.Reader
	w        io.Writer
	noZeroes bool
	// structured is set by NBD_OPT_STRUCTURED_REPLY: replies are then
	// structured chunks.
	structured bool
	// allocation is set when NBD_OPT_SET_META_CONTEXT selected
	// base:allocation for the export named allocationExport; NBD_CMD_BLOCK_STATUS
	// is valid only then.
	allocation       bool
	allocationExport string
	writeMu          sync.Mutex // serializes replies in transmission
}
