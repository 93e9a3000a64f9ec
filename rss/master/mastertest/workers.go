package mastertest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"basalt/rss/gossip"
	"basalt/rss/master"
	"basalt/rss/rsspb"
)

// Call is one call the master made to a fake worker.
type Call struct {
	// Addr is the worker address the master dialed.
	Addr string
	// Method is "Commit" or "DeleteShuffle".
	Method string
	// App and Token are the call's basalt-rss-app and basalt-rss-token
	// metadata.
	App, Token string
	// AppID is DeleteShuffleRequest.app_id (empty for Commit).
	AppID string
	// Shuffle is the request's shuffle id.
	Shuffle int32
}

// Workers is a set of fake workers addressed by gRPC address; its Dial
// is a master.Dialer. The zero value is not usable: use NewWorkers. Safe
// for concurrent use.
type Workers struct {
	mu struct {
		sync.Mutex
		calls        []Call
		failCommit   map[string]bool
		failDeletes  map[string]int
		blockCommits chan struct{}
	}
}

// NewWorkers returns fake workers that accept every call. Injected
// failures are the status Unavailable.
func NewWorkers() *Workers {
	w := &Workers{}
	w.mu.failCommit = map[string]bool{}
	w.mu.failDeletes = map[string]int{}
	return w
}

var _ master.Dialer = (*Workers)(nil).Dial

// Dial returns a client of the fake worker at addr.
func (w *Workers) Dial(addr string) (rsspb.WorkerClient, error) {
	return &client{w: w, addr: addr}, nil
}

// FailCommit makes every later Commit on addr fail (fail true) or
// succeed (false).
func (w *Workers) FailCommit(addr string, fail bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.failCommit[addr] = fail
}

// FailDeletes makes the next n DeleteShuffle calls on addr fail.
func (w *Workers) FailDeletes(addr string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.failDeletes[addr] = n
}

// BlockCommits makes every later Commit wait until its context ends or
// the returned function is called.
func (w *Workers) BlockCommits() (release func()) {
	ch := make(chan struct{})
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.blockCommits = ch
	return sync.OnceFunc(func() { close(ch) })
}

// Calls returns every call made so far, in order.
func (w *Workers) Calls() []Call {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.mu.calls)
}

// CallsTo returns the calls of method made so far, in order.
func (w *Workers) CallsTo(method string) []Call {
	return slices.DeleteFunc(w.Calls(), func(c Call) bool { return c.Method != method })
}

// record appends c and returns the channel a Commit must wait on (nil:
// none) and the injected error for it, if any.
func (w *Workers) record(c Call) (chan struct{}, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.calls = append(w.mu.calls, c)
	fail := false
	switch c.Method {
	case "Commit":
		fail = w.mu.failCommit[c.Addr]
	case "DeleteShuffle":
		if w.mu.failDeletes[c.Addr] > 0 {
			w.mu.failDeletes[c.Addr]--
			fail = true
		}
	}
	if fail {
		return nil, status.Errorf(codes.Unavailable, "mastertest: injected %s failure on %s", c.Method, c.Addr)
	}
	if c.Method == "Commit" {
		return w.mu.blockCommits, nil
	}
	return nil, nil
}

// client is the rsspb.WorkerClient of one fake worker. Push, Replicate
// and Fetch are not implemented (the embedded nil interface panics).
type client struct {
	rsspb.WorkerClient
	w    *Workers
	addr string
}

// newCall builds the Call record of a call with ctx's metadata.
func (c *client) newCall(ctx context.Context, method string, shuffle int32) Call {
	md, _ := metadata.FromOutgoingContext(ctx)
	first := func(k string) string {
		if v := md.Get(k); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return Call{Addr: c.addr, Method: method, App: first(master.MetadataApp), Token: first(master.MetadataToken), Shuffle: shuffle}
}

// Commit records the call and succeeds unless a failure was injected.
func (c *client) Commit(ctx context.Context, in *rsspb.CommitRequest, _ ...grpc.CallOption) (*rsspb.CommitResponse, error) {
	block, err := c.w.record(c.newCall(ctx, "Commit", in.GetShuffleId()))
	if err != nil {
		return nil, err
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &rsspb.CommitResponse{}, nil
}

// DeleteShuffle records the call and succeeds unless a failure was
// injected.
func (c *client) DeleteShuffle(ctx context.Context, in *rsspb.DeleteShuffleRequest, _ ...grpc.CallOption) (*rsspb.DeleteShuffleResponse, error) {
	call := c.newCall(ctx, "DeleteShuffle", in.GetShuffleId())
	call.AppID = in.GetAppId()
	if _, err := c.w.record(call); err != nil {
		return nil, err
	}
	return &rsspb.DeleteShuffleResponse{}, nil
}

// WorkerMetas returns n live workers "w1".."wn" at "10.0.0.<i>:9100" with
// 1 TiB free and no partitions.
func WorkerMetas(n int) []gossip.Meta {
	out := make([]gossip.Meta, n)
	for i := range out {
		out[i] = gossip.Meta{
			ID: fmt.Sprintf("w%d", i+1), Addr: fmt.Sprintf("10.0.0.%d:9100", i+1),
			DiskFreeBytes: 1 << 40, Role: gossip.RoleWorker,
		}
	}
	return out
}
