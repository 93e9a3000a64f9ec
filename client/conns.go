package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"basalt/chunkserver/chunkserverpb"
	"basalt/mds/mdspb"
)

// dialOptions are the options of every connection: the defaults, then the
// caller's.
func dialOptions(extra []grpc.DialOption) []grpc.DialOption {
	bo := backoff.DefaultConfig
	bo.MaxDelay = 2 * time.Second
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: time.Second}),
	}
	return append(opts, extra...)
}

// mdsPool holds one connection per MDS address.
type mdsPool struct {
	conns   []*grpc.ClientConn
	clients []mdspb.MDSClient
	cur     atomic.Int64 // index of the address that answered last
}

// newMDSPool creates (but does not connect) a client per address.
func newMDSPool(addrs []string, opts []grpc.DialOption) (*mdsPool, error) {
	p := &mdsPool{}
	for _, a := range addrs {
		cc, err := grpc.NewClient(a, opts...)
		if err != nil {
			_ = p.close()
			return nil, fmt.Errorf("%w: MDS address %q: %w", ErrInvalidArgument, a, err)
		}
		p.conns = append(p.conns, cc)
		p.clients = append(p.clients, mdspb.NewMDSClient(cc))
	}
	return p, nil
}

// mdsCall is one MDS RPC.
type mdsCall func(context.Context, mdspb.MDSClient) error

// call runs fn against each MDS address at most once, in order from the one
// that answered last, each attempt bounded by timeout, until one answers
// with anything but Unavailable or DeadlineExceeded. It returns fn's last
// error translated by mapStatus with overrides.
func (p *mdsPool) call(ctx context.Context, timeout time.Duration, fn mdsCall, overrides ...meaning) error {
	start := int(p.cur.Load())
	var err error
	for i := range p.clients {
		idx := (start + i) % len(p.clients)
		if err = p.attempt(ctx, timeout, idx, fn); !unreachable(err) || ctx.Err() != nil {
			break
		}
	}
	return mapStatus(err, overrides...)
}

// attempt runs fn once against address idx and remembers idx if it answered.
func (p *mdsPool) attempt(ctx context.Context, timeout time.Duration, idx int, fn mdsCall) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := fn(ctx, p.clients[idx])
	if !unreachable(err) {
		p.cur.Store(int64(idx))
	}
	return err
}

// unreachable reports whether err says the server did not answer.
func unreachable(err error) bool {
	c := status.Code(err)
	return err != nil && (c == codes.Unavailable || c == codes.DeadlineExceeded)
}

func (p *mdsPool) close() error {
	var errs []error
	for _, cc := range p.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}

// connPool holds one connection per chunkserver address, created on first
// use and kept until close.
type connPool struct {
	opts []grpc.DialOption
	mu   struct {
		sync.Mutex
		conns map[string]*grpc.ClientConn
	}
}

func newConnPool(opts []grpc.DialOption) *connPool {
	p := &connPool{opts: opts}
	p.mu.conns = map[string]*grpc.ClientConn{}
	return p
}

// client returns a chunkserver client for addr. A failure wraps
// ErrUnavailable, so the caller moves on to another member.
func (p *connPool) client(addr string) (chunkserverpb.ChunkserverClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.mu.conns[addr]; ok {
		return chunkserverpb.NewChunkserverClient(cc), nil
	}
	if addr == "" {
		return nil, fmt.Errorf("%w: chunkserver address unknown", ErrUnavailable)
	}
	cc, err := grpc.NewClient(addr, p.opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connecting to chunkserver %s: %w", ErrUnavailable, addr, err)
	}
	p.mu.conns[addr] = cc
	return chunkserverpb.NewChunkserverClient(cc), nil
}

func (p *connPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for addr, cc := range p.mu.conns {
		errs = append(errs, cc.Close())
		delete(p.mu.conns, addr)
	}
	return errors.Join(errs...)
}
