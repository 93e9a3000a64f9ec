package client

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"google.golang.org/grpc"
)

// Options configures Open. Build them with DefaultOptions and override
// fields; a zero optional field means "use the default".
type Options struct {
	// MDSAddrs are the MDS gRPC addresses (host:port). Every MDS call tries
	// them in order, starting with the one that answered last, and moves on
	// when one is unreachable. Required.
	MDSAddrs []string
	// Writer opens the volume for writing: Open takes the volume's writer
	// lease (one writer per volume) and renews it until Close. Default
	// false: a reader, whose writes fail with ErrReadOnly.
	Writer bool
	// Force takes the writer lease from its current holder instead of
	// failing with ErrWriterExists; the MDS fences the old holder. Only with
	// Writer. Default false.
	Force bool
	// ClientName identifies this client to the MDS; a refused second writer
	// sees it. Default "<hostname>/<pid>".
	ClientName string
	// RetryDeadline bounds how long one call (ReadAt, WriteAt, Discard, or
	// Open's MDS calls) keeps retrying leader changes, timeouts and lost
	// connections before it fails with ErrUnavailable. Default 30s.
	RetryDeadline time.Duration
	// RPCTimeout bounds one attempt of one RPC. Default 5s.
	RPCTimeout time.Duration
	// MaxParallel is the number of chunk parts one call sends at once.
	// Default 16.
	MaxParallel int
	// NegativeCacheTTL is how long a read trusts the MDS's answer that a
	// segment was never written before asking again (another writer may
	// allocate it meanwhile). Allocated segments are cached for the life of
	// the Volume; writes and discards never trust a cached "not allocated".
	// Default 1s.
	NegativeCacheTTL time.Duration
	// Logger receives the volume's logs (lease renewal problems, lease
	// loss); nothing is logged per I/O. Default slog.Default().
	Logger *slog.Logger
	// DialOptions are added to every gRPC connection (MDS and chunkservers)
	// after the defaults (insecure transport credentials, reconnect backoff
	// capped at 2s), so they can override them.
	DialOptions []grpc.DialOption
}

// DefaultOptions returns Options with every optional field set to its
// default. MDSAddrs must still be filled in.
func DefaultOptions() Options {
	return Options{
		ClientName:       defaultClientName(),
		RetryDeadline:    30 * time.Second,
		RPCTimeout:       5 * time.Second,
		MaxParallel:      16,
		NegativeCacheTTL: time.Second,
		Logger:           slog.Default(),
	}
}

func defaultClientName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// Validate fills zero optional fields with their defaults and reports the
// first problem, wrapped in ErrInvalidArgument.
func (o *Options) Validate() error {
	o.fillDefaults()
	switch {
	case len(o.MDSAddrs) == 0:
		return fmt.Errorf("%w: Options.MDSAddrs is empty", ErrInvalidArgument)
	case o.Force && !o.Writer:
		return fmt.Errorf("%w: Options.Force needs Options.Writer", ErrInvalidArgument)
	case o.RetryDeadline < 0 || o.RPCTimeout < 0 || o.NegativeCacheTTL < 0:
		return fmt.Errorf("%w: negative duration in Options", ErrInvalidArgument)
	case o.MaxParallel < 0:
		return fmt.Errorf("%w: Options.MaxParallel is negative", ErrInvalidArgument)
	}
	return nil
}

func (o *Options) fillDefaults() {
	d := DefaultOptions()
	if o.ClientName == "" {
		o.ClientName = d.ClientName
	}
	if o.RetryDeadline == 0 {
		o.RetryDeadline = d.RetryDeadline
	}
	if o.RPCTimeout == 0 {
		o.RPCTimeout = d.RPCTimeout
	}
	if o.MaxParallel == 0 {
		o.MaxParallel = d.MaxParallel
	}
	if o.NegativeCacheTTL == 0 {
		o.NegativeCacheTTL = d.NegativeCacheTTL
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
}
