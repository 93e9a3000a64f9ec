package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"

	"basalt/rss/gossip"
	"basalt/rss/rsspb"
)

// gRPC metadata keys carrying an application's id and token.
const (
	MetadataApp   = "basalt-rss-app"
	MetadataToken = "basalt-rss-token"
)

// Server is the master's gRPC service: it authenticates calls, feeds the
// State one command per mutation, and carries out what the State decides
// on the workers (Commit, DeleteShuffle). It also collects expired
// application leases in the background. Safe for concurrent use.
type Server struct {
	rsspb.UnimplementedMasterServer

	cfg     Config
	log     *slog.Logger
	metrics *metrics
	// ctx lives until Close; background work (lease expiry, deletions)
	// runs under it and wg counts it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		state  *State
		rng    *mrand.Rand
		closed bool
	}
}

var _ rsspb.MasterServer = (*Server)(nil)

// New validates cfg and returns a Server with empty state, collecting
// expired leases every cfg.ExpiryInterval until Close.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: newMetrics()}
	s.mu.state = NewState(cfg.Placement)
	seed := cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	s.mu.rng = mrand.New(mrand.NewPCG(seed, 0))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.expiryLoop()
	return s, nil
}

// Close stops the lease collector and abandons deletions still being
// retried, waiting for their goroutines; later calls fail with ErrClosed.
// It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.mu.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
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
// register (the package registers nothing itself).
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.rpcs, m.rpcErrors, m.mapEnds, m.commits, stateCollector{s}}
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

// apply runs fn on the state under the lock.
func apply[T any](s *Server, fn func(*State) (T, error)) (T, error) {
	if err := s.lock(); err != nil {
		var zero T
		return zero, err
	}
	defer s.mu.Unlock()
	return fn(s.mu.state)
}

// seed returns a seed for one placement command.
func (s *Server) seed() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.rng.Uint64()
}

func (s *Server) now() time.Time { return s.cfg.Clock() }

// call runs fn for the RPC method, maps its error to a gRPC status and
// counts it.
func call[T any](ctx context.Context, s *Server, method string, fn func() (T, error)) (T, error) {
	var resp T
	err := ctx.Err()
	if err == nil {
		resp, err = fn()
	}
	err = toStatus(err)
	s.metrics.observe(method, err)
	if err != nil {
		var zero T
		return zero, err
	}
	return resp, nil
}

// authed is call for methods of an authenticated application: fn gets the
// application id from the call's metadata.
func authed[T any](ctx context.Context, s *Server, method string, fn func(app string) (T, error)) (T, error) {
	return call(ctx, s, method, func() (T, error) {
		app, err := s.authenticate(ctx)
		if err != nil {
			var zero T
			return zero, err
		}
		return fn(app)
	})
}

// credentials returns the application id and token of the call's
// metadata (empty when absent).
func credentials(ctx context.Context) (app, token string) {
	md, _ := metadata.FromIncomingContext(ctx)
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return first(MetadataApp), first(MetadataToken)
}

// authenticate checks the call's application id and token: no id or
// token is ErrUnauthenticated, an unknown application ErrAppNotFound, a
// wrong token ErrUnauthenticated.
func (s *Server) authenticate(ctx context.Context) (string, error) {
	app, token := credentials(ctx)
	if app == "" {
		return "", fmt.Errorf("%w: no %s metadata", ErrUnauthenticated, MetadataApp)
	}
	_, err := apply(s, func(st *State) (struct{}, error) {
		return struct{}{}, st.Authenticate(app, token, s.now())
	})
	return app, err
}

// newToken returns 16 random bytes as 32 hex digits.
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("drawing a token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// workers returns the live members with role worker.
func (s *Server) workers() []gossip.Meta {
	var out []gossip.Meta
	for _, m := range s.cfg.Members() {
		if m.Role == gossip.RoleWorker {
			out = append(out, m)
		}
	}
	return out
}

// addrOf returns the worker's current address from the membership (it
// may have restarted elsewhere), else the one recorded in ref.
func (s *Server) addrOf(ref WorkerRef) string {
	for _, m := range s.cfg.Members() {
		if m.ID == ref.ID && m.Role == gossip.RoleWorker && m.Addr != "" {
			return m.Addr
		}
	}
	return ref.Addr
}

// outgoing returns ctx carrying app's credentials for a worker call.
func outgoing(ctx context.Context, app, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, MetadataApp, app, MetadataToken, token)
}
