package mds

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"basalt/mds/mdspb"
)

// Server is the metadata server: it implements mdspb.MDSServer over its
// metadata store. Build one with New and register it on a grpc.Server with
// mdspb.RegisterMDSServer. Every method is safe for concurrent use; all of
// them are serialized by one mutex, held across the (synced) store writes.
type Server struct {
	mdspb.UnimplementedMDSServer

	cfg     Config
	kv      KV
	closer  io.Closer // the store New opened, nil when Config.KV was given
	log     *slog.Logger
	metrics *metrics

	mu struct {
		sync.Mutex
		closed bool
		rng    *rand.Rand
		state
	}
}

var _ mdspb.MDSServer = (*Server)(nil)

// New opens the metadata store (Config.KV, or a PebbleKV in Config.Dir/meta)
// and loads its state. The geometry (chunk and segment size) of a new store
// is taken from cfg; an existing store must have been created with the same.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "mds"), metrics: newMetrics()}
	if err := s.openKV(); err != nil {
		return nil, err
	}
	s.mu.rng = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	s.mu.state = newState()
	if err := s.load(); err != nil {
		_ = s.closeKV()
		return nil, err
	}
	s.log.Info("mds started", "chunkservers", len(s.mu.servers), "copysets", len(s.mu.copysets),
		"volumes", len(s.mu.volumes), "seed", cfg.Seed)
	return s, nil
}

// openKV sets s.kv to Config.KV or to a PebbleKV it opens.
func (s *Server) openKV() error {
	if s.cfg.KV != nil {
		s.kv = s.cfg.KV
		return nil
	}
	dir := s.cfg.FS.PathJoin(s.cfg.Dir, "meta")
	kv, err := OpenPebbleKV(s.cfg.FS, dir, s.log.With("component", "pebble"))
	if err != nil {
		return err
	}
	s.kv, s.closer = kv, kv
	return nil
}

func (s *Server) closeKV() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}

// Close closes the store New opened. Calls in progress finish first;
// later ones fail with ErrClosed. Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil
	}
	s.mu.closed = true
	if err := s.closeKV(); err != nil {
		return fmt.Errorf("closing metadata store: %w", err)
	}
	return nil
}

// Health reports whether the server is serving: nil, or ErrClosed.
func (s *Server) Health() error {
	if err := s.lock(); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Collectors returns the server's Prometheus collectors, for the caller to
// register (package mds registers nothing itself).
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.rpcs, s.metrics.rpcErrors, stateCollector{s}}
}

// lock takes s.mu, or fails with ErrClosed after Close.
func (s *Server) lock() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (s *Server) now() time.Time { return s.cfg.Clock() }

// call runs one RPC: it fails at once if ctx is done, maps fn's error to a
// gRPC status (toStatus) and counts the call.
func call[T any](ctx context.Context, s *Server, method string, fn func() (T, error)) (T, error) {
	var resp T
	err := ctx.Err()
	if err == nil {
		resp, err = fn()
	}
	if err != nil {
		var zero T
		err = toStatus(err)
		s.metrics.observe(method, err)
		return zero, err
	}
	s.metrics.observe(method, nil)
	return resp, nil
}
