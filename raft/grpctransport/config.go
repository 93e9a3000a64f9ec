package grpctransport

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// Default values of Config fields.
const (
	DefaultQueueSize          = 4096
	DefaultMaxBatchBytes      = 4 << 20
	DefaultSnapshotChunkBytes = 1 << 20
	DefaultDialTimeout        = 5 * time.Second
)

// Config configures a Transport. The zero value of every optional field
// means its default; DefaultConfig returns a Config with the defaults filled
// in. HostID and Resolver have no default.
type Config struct {
	// HostID is this host's raft node ID. Outbound batches carry it as
	// from_host; inbound batches whose to_host differs are rejected.
	// Required (non-zero).
	HostID uint64
	// Resolver maps a peer host ID to its gRPC address. It is called each
	// time a peer stream or snapshot stream is dialed, so an address that
	// changes is picked up on the next redial. Required.
	Resolver Resolver
	// QueueSize is the number of messages queued per peer host before Send
	// drops new ones. Default DefaultQueueSize (4096).
	QueueSize int
	// MaxBatchBytes bounds the encoded size, in bytes, of one MessageBatch.
	// It is also the largest single raft message the transport sends: a
	// larger one is dropped and counted. Keep it at or below the receiving
	// server's grpc.MaxRecvMsgSize (4 MiB unless set; see ServerOptions).
	// Default DefaultMaxBatchBytes (4 MiB).
	MaxBatchBytes int
	// SnapshotChunkBytes is the size, in bytes, of the data of one snapshot
	// chunk. Default DefaultSnapshotChunkBytes (1 MiB).
	SnapshotChunkBytes int
	// DialTimeout bounds how long connecting to a peer may take before the
	// peer is reported unreachable. Default DefaultDialTimeout (5s).
	DialTimeout time.Duration
	// Logger receives connection and protocol errors (never one line per
	// message). Nil discards them.
	Logger *slog.Logger
	// DialOptions are appended to the transport's own dial options
	// (insecure credentials) for every connection, e.g. keepalive
	// parameters or a custom dialer. Nil means none.
	DialOptions []grpc.DialOption
}

// DefaultConfig returns a Config with every default filled in. The caller
// still has to set HostID and Resolver.
func DefaultConfig() Config {
	return Config{
		QueueSize:          DefaultQueueSize,
		MaxBatchBytes:      DefaultMaxBatchBytes,
		SnapshotChunkBytes: DefaultSnapshotChunkBytes,
		DialTimeout:        DefaultDialTimeout,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

// withDefaults returns c with zero optional fields replaced by defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.QueueSize == 0 {
		c.QueueSize = d.QueueSize
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = d.MaxBatchBytes
	}
	if c.SnapshotChunkBytes == 0 {
		c.SnapshotChunkBytes = d.SnapshotChunkBytes
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate reports the first invalid field, wrapped in ErrInvalidConfig.
// Zero optional fields are valid (they mean the default).
func (c Config) Validate() error {
	switch {
	case c.HostID == 0:
		return fmt.Errorf("%w: HostID is 0", ErrInvalidConfig)
	case c.Resolver == nil:
		return fmt.Errorf("%w: Resolver is nil", ErrInvalidConfig)
	case c.QueueSize < 0:
		return fmt.Errorf("%w: QueueSize %d < 0", ErrInvalidConfig, c.QueueSize)
	case c.MaxBatchBytes < 0:
		return fmt.Errorf("%w: MaxBatchBytes %d < 0", ErrInvalidConfig, c.MaxBatchBytes)
	case c.SnapshotChunkBytes < 0:
		return fmt.Errorf("%w: SnapshotChunkBytes %d < 0", ErrInvalidConfig, c.SnapshotChunkBytes)
	case c.DialTimeout < 0:
		return fmt.Errorf("%w: DialTimeout %v < 0", ErrInvalidConfig, c.DialTimeout)
	}
	return nil
}

// Resolver maps a host ID to the address of its RaftTransport gRPC server.
// It may be called concurrently.
type Resolver interface {
	// Resolve returns host's address ("host:port"), or an error wrapping
	// ErrUnknownHost when there is none.
	Resolve(host uint64) (addr string, err error)
}

// StaticResolver is a Resolver backed by a map that can be updated at run
// time. The zero value is empty and ready to use; it is safe for concurrent
// use.
type StaticResolver struct {
	mu    sync.RWMutex
	addrs map[uint64]string
}

var _ Resolver = (*StaticResolver)(nil)

// NewStaticResolver returns a StaticResolver holding a copy of addrs (which
// may be nil).
func NewStaticResolver(addrs map[uint64]string) *StaticResolver {
	r := &StaticResolver{}
	for host, addr := range addrs {
		r.Set(host, addr)
	}
	return r
}

// Set maps host to addr, replacing any earlier address. An empty addr
// removes the host.
func (r *StaticResolver) Set(host uint64, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.addrs == nil {
		r.addrs = make(map[uint64]string)
	}
	if addr == "" {
		delete(r.addrs, host)
		return
	}
	r.addrs[host] = addr
}

// Resolve implements Resolver.
func (r *StaticResolver) Resolve(host uint64) (string, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	addr, ok := r.addrs[host]
	if !ok {
		return "", fmt.Errorf("%w: host %d", ErrUnknownHost, host)
	}
	return addr, nil
}
