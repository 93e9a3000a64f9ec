package grpctransport

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// insecureCreds returns plaintext credentials. TLS is a later issue.
func insecureCreds() credentials.TransportCredentials {
	return insecure.NewCredentials()
}

// dial resolves host and returns a connection that is ready, or an error
// once DialTimeout passes or the first attempt fails. The caller closes it.
func (t *Transport) dial(ctx context.Context, host uint64) (*grpc.ClientConn, error) {
	addr, err := t.cfg.Resolver.Resolve(host)
	if err != nil {
		return nil, errorf("resolving host %d: %w", host, err)
	}
	cc, err := grpc.NewClient(addr, t.dialOptions()...)
	if err != nil {
		return nil, errorf("dialing host %d at %s: %w", host, addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	if err := waitReady(ctx, cc); err != nil {
		_ = cc.Close()
		return nil, errorf("connecting to host %d at %s: %w", host, addr, err)
	}
	return cc, nil
}

// waitReady connects cc and waits until it is ready. It fails on the first
// transient failure (the caller has its own backoff) or when ctx expires.
func waitReady(ctx context.Context, cc *grpc.ClientConn) error {
	cc.Connect()
	for {
		state := cc.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("%w: connection %s", ErrUnavailable, state)
		}
		if !cc.WaitForStateChange(ctx, state) {
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
	}
}
