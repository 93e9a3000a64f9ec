package masterconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Trailer keys a master sets on a failed call: TrailerServed on every
// one, TrailerLeader (the leader's address, empty if unknown) when it
// refused the call because it does not lead.
const (
	TrailerLeader = "basalt-rss-leader"
	TrailerServed = "basalt-rss-served"
)

// Backoff between rounds over every address.
const (
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
)

// ErrNoAddress: Dial was given no master address.
var ErrNoAddress = errors.New("masterconn: no master address")

// Conn is a connection to a set of masters. Safe for concurrent use.
type Conn struct {
	addrs  []string
	conns  []*grpc.ClientConn
	window time.Duration
	cur    atomic.Int64 // index of the master believed to lead
}

var _ grpc.ClientConnInterface = (*Conn)(nil)

// Split returns the addresses of a comma-separated list, trimmed, empty
// entries dropped.
func Split(list string) []string {
	var out []string
	for a := range strings.SplitSeq(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Dial returns a Conn to the masters at addrs (connecting lazily, with
// opts). A call is failed over for at most window (0: only one round
// over the addresses).
func Dial(addrs []string, window time.Duration, opts ...grpc.DialOption) (*Conn, error) {
	if len(addrs) == 0 {
		return nil, ErrNoAddress
	}
	c := &Conn{addrs: addrs, window: window}
	// A master that comes back (restarted, or the new leader after a
	// partition) is reconnected within a second or two, not after gRPC's
	// default backoff of up to two minutes.
	opts = append([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	})}, opts...)
	for _, a := range addrs {
		cc, err := grpc.NewClient(a, opts...)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("dialing master %s: %w", a, err)
		}
		c.conns = append(c.conns, cc)
	}
	return c, nil
}

// Addrs returns the masters' addresses.
func (c *Conn) Addrs() []string { return c.addrs }

// Invoke implements grpc.ClientConnInterface: it sends the call to the
// master believed to lead, failing over as the package doc says.
func (c *Conn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if len(c.conns) == 1 {
		return c.conns[0].Invoke(ctx, method, args, reply, opts...)
	}
	deadline := time.Now().Add(c.window)
	backoff := firstBackoff
	for tried := 1; ; tried++ {
		i := c.cur.Load()
		var tr metadata.MD
		err := c.conns[i].Invoke(ctx, method, args, reply, append(opts, grpc.Trailer(&tr))...)
		if !c.failOver(err, tr) || ctx.Err() != nil {
			return err
		}
		c.cur.CompareAndSwap(i, c.next(i, tr))
		if tried%len(c.conns) != 0 {
			continue
		}
		if !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// failOver reports whether err means "ask another master": a master that
// does not lead, or no master answered at all.
func (c *Conn) failOver(err error, tr metadata.MD) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	return len(tr.Get(TrailerLeader)) > 0 || len(tr.Get(TrailerServed)) == 0
}

// next returns the index of the master to try after i: the leader named
// in the trailer, else the following address.
func (c *Conn) next(i int64, tr metadata.MD) int64 {
	if l := tr.Get(TrailerLeader); len(l) > 0 && l[0] != "" {
		for j, a := range c.addrs {
			if a == l[0] && int64(j) != i {
				return int64(j)
			}
		}
	}
	return (i + 1) % int64(len(c.conns))
}

// NewStream implements grpc.ClientConnInterface on the master believed
// to lead, without failover (the master has no streaming calls).
func (c *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.conns[c.cur.Load()].NewStream(ctx, desc, method, opts...)
}

// Close closes every connection.
func (c *Conn) Close() error {
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}
