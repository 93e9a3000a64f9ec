package master

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"basalt/rss/gossip"
	"basalt/rss/masterconn"
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

	store stateStore

	mu struct {
		sync.Mutex
		rng    *mrand.Rand
		closed bool
		// deleting holds the worker deletions running in this process.
		deleting map[deletionKey]bool
	}
}

var _ rsspb.MasterServer = (*Server)(nil)

// New validates cfg and returns a Server whose State lives in this
// process only (lost when it exits), collecting expired leases every
// cfg.ExpiryInterval until Close.
func New(cfg Config) (*Server, error) {
	return newServer(cfg, func() stateStore { return &localStore{state: NewState(cfg.Placement)} })
}

// NewReplicated is New for a master whose State is replicated through
// rep's raft group: mutations are proposed, reads wait for a ReadIndex,
// both only on the leader (elsewhere calls fail with a NotLeaderError,
// Unavailable across gRPC), and only the leader collects expired leases.
// rep.Replica must be the group's state machine, built with
// cfg.Placement.
func NewReplicated(cfg Config, rep Replication) (*Server, error) {
	if rep.Host == nil || rep.Replica == nil {
		return nil, fmt.Errorf("%w: replication needs a raft host and its Replica", ErrInvalidConfig)
	}
	return newServer(cfg, func() stateStore { return &raftStore{rep} })
}

func newServer(cfg Config, store func() stateStore) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), store: store()}
	seed := cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	s.mu.rng = mrand.New(mrand.NewPCG(seed, 0))
	s.mu.deleting = make(map[deletionKey]bool)
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
func (s *Server) Health() error { return s.checkOpen() }

// Leading reports whether this master carries out the State's background
// duties: always without replication, else while it leads the group.
func (s *Server) Leading() bool { return s.store.leading() }

// Collectors returns the server's Prometheus collectors, for the caller to
// register (the package registers nothing itself).
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.rpcs, m.rpcErrors, m.mapEnds, m.commits, stateCollector{s}}
}

// checkOpen fails with ErrClosed after Close.
func (s *Server) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrClosed
	}
	return nil
}

// update applies c to the State (through the store) and returns the
// State method's value.
func update[T any](ctx context.Context, s *Server, c Command) (T, error) {
	var zero T
	if err := s.checkOpen(); err != nil {
		return zero, err
	}
	v, err := s.store.update(ctx, c)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok && v != nil {
		return zero, fmt.Errorf("rss master: a command returned %T, want %T", v, zero)
	}
	return t, nil
}

// view runs the query fn on a linearizable view of the State.
func view[T any](ctx context.Context, s *Server, fn func(*State) (T, error)) (T, error) {
	var out T
	if err := s.checkOpen(); err != nil {
		return out, err
	}
	err := s.store.view(ctx, func(st *State) error {
		var err error
		out, err = fn(st)
		return err
	})
	return out, err
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
	if err != nil {
		tr := metadata.Pairs(masterconn.TrailerServed, "1")
		if nl := (*NotLeaderError)(nil); errors.As(err, &nl) {
			tr.Set(masterconn.TrailerLeader, nl.Leader)
		}
		_ = grpc.SetTrailer(ctx, tr)
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
	_, err := view(ctx, s, func(st *State) (struct{}, error) {
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
