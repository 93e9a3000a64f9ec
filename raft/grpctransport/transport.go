package grpctransport

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"basalt/raft"
	"basalt/raft/transportpb"
)

// Transport is the gRPC implementation of raft.Transport. It sends through
// one stream per peer host and serves inbound traffic through a
// RaftTransport service registered with Register. All methods may be called
// concurrently.
type Transport struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	handler atomic.Pointer[handlerRef]

	// ctx is cancelled by Close; every goroutine and stream derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		closed bool
		peers  map[uint64]*peer
	}
}

// handlerRef boxes a raft.Handler for atomic.Pointer.
type handlerRef struct{ h raft.Handler }

var _ raft.Transport = (*Transport)(nil)

// New returns a Transport for cfg. It starts no goroutine and opens no
// connection until the first Send.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := &Transport{
		cfg:     cfg,
		log:     cfg.Logger.With("host", cfg.HostID),
		metrics: newMetrics(),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.peers = make(map[uint64]*peer)
	return t, nil
}

// SetHandler sets the receiver of inbound messages, snapshots and
// unreachable reports. Until it is called, inbound messages are dropped and
// inbound snapshots refused. It may be called at any time; calls made to
// the previous handler may still be in progress when it returns.
func (t *Transport) SetHandler(h raft.Handler) {
	t.handler.Store(&handlerRef{h: h})
}

// loadHandler returns the current handler or nil.
func (t *Transport) loadHandler() raft.Handler {
	if ref := t.handler.Load(); ref != nil {
		return ref.h
	}
	return nil
}

// Register registers the RaftTransport service on s. The caller owns s:
// it starts, stops and configures it (see ServerOptions). Inbound streams
// end when s stops; after Close they are refused.
func (t *Transport) Register(s grpc.ServiceRegistrar) {
	transportpb.RegisterRaftTransportServer(s, &server{t: t})
}

// ServerOptions returns the grpc.ServerOptions a server registered with
// Register needs to accept this configuration's largest batches and
// snapshot chunks (a receive limit above the 4 MiB default when
// MaxBatchBytes or SnapshotChunkBytes is larger).
func (t *Transport) ServerOptions() []grpc.ServerOption {
	limit := max(t.cfg.MaxBatchBytes, t.cfg.SnapshotChunkBytes+chunkOverhead, 4<<20)
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(limit),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
	}
}

// Collectors returns the transport's Prometheus collectors for the caller
// to register.
func (t *Transport) Collectors() []prometheus.Collector {
	return t.metrics.collectors()
}

// Close stops every peer stream and goroutine and waits for them. Queued
// messages are dropped; SendSnapshot calls in progress fail. It is safe to
// call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.mu.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	return nil
}

// Send implements raft.Transport. It never blocks: a message for a peer
// whose queue is full is dropped and counted.
func (t *Transport) Send(msgs []raft.Envelope) {
	for _, env := range msgs {
		to := env.Message.GetTo()
		if to == 0 {
			t.metrics.drop(dropInvalid, 1)
			continue
		}
		p := t.peer(to)
		if p == nil {
			t.metrics.drop(dropClosed, 1)
			continue
		}
		p.enqueue(env)
	}
}

// peer returns the peer for host, starting it on first use; nil after
// Close.
func (t *Transport) peer(host uint64) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil
	}
	p, ok := t.mu.peers[host]
	if !ok {
		p = newPeer(t, host)
		t.mu.peers[host] = p
		t.wg.Go(func() { p.run(t.ctx) })
	}
	return p
}

// unreachable reports host to the handler, if any.
func (t *Transport) unreachable(host uint64) {
	if h := t.loadHandler(); h != nil {
		h.HandleUnreachable(host)
	}
}

// Flow-control windows of raft connections. Fixed, generous windows turn
// off gRPC's BDP-estimation pings and cut WINDOW_UPDATE frames: each is a
// write syscall, and syscalls are a large part of a commit's CPU cost.
const (
	streamWindow = 8 << 20
	connWindow   = 32 << 20
)

// dialOptions returns the options for every outbound connection.
func (t *Transport) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecureCreds()),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	}
	return append(opts, t.cfg.DialOptions...)
}

// errorf is fmt.Errorf with the transport's prefix.
func errorf(format string, args ...any) error {
	return fmt.Errorf("grpctransport: "+format, args...)
}
