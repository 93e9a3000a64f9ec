package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"basalt/rss/rsspb"
)

// Metadata keys every application call carries.
const (
	// MetadataApp carries the application id.
	MetadataApp = "basalt-rss-app"
	// MetadataToken carries the application's secret token (checked by the
	// master, only forwarded by workers).
	MetadataToken = "basalt-rss-token"
)

// callApp returns the application id (validated) and token of a call.
func callApp(ctx context.Context) (app, token string, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(MetadataApp); len(v) > 0 {
		app = v[0]
	}
	if v := md.Get(MetadataToken); len(v) > 0 {
		token = v[0]
	}
	if app == "" {
		return "", "", ErrNoApp
	}
	return app, token, checkApp(app)
}

// errReplicaEnded: the replica closed its Replicate stream while
// batches were unacknowledged.
var errReplicaEnded = errors.New("worker: the replica ended the stream")

// peers holds one client per replica address.
type peers struct {
	dial Dialer
	own  bool // dial is the default dialer: conns are ours to close

	mu      sync.Mutex
	clients map[string]rsspb.WorkerClient
	conns   []*grpc.ClientConn
}

func newPeers(d Dialer) *peers {
	p := &peers{dial: d, clients: map[string]rsspb.WorkerClient{}}
	if d == nil {
		p.dial, p.own = p.dialDefault, true
	}
	return p
}

// dialDefault connects (lazily) without transport security.
// REQUIRES: p.mu held.
func (p *peers) dialDefault(addr string) (rsspb.WorkerClient, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)))
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	p.conns = append(p.conns, conn)
	return rsspb.NewWorkerClient(conn), nil
}

// client returns the client of addr, dialing on first use.
func (p *peers) client(addr string) (rsspb.WorkerClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[addr]; c != nil {
		return c, nil
	}
	c, err := p.dial(addr)
	if err != nil {
		return nil, err
	}
	p.clients[addr] = c
	return c, nil
}

// close closes the connections the default dialer made.
func (p *peers) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	p.conns, p.clients = nil, map[string]rsspb.WorkerClient{}
	return errors.Join(errs...)
}

// replicaStream is a primary's Replicate stream to one replica, for one
// Push stream. Batches are sent as they are accepted; the replica's
// cumulative acknowledgements complete their waiters' replica parts in
// order.
type replicaStream struct {
	addr   string
	stream rsspb.Worker_ReplicateClient
	done   chan struct{} // closed when the receiving goroutine ends

	mu    sync.Mutex
	sent  []*waiter // sent and not yet acknowledged, in order
	acked int64
	err   error // once set, the stream is dead: sends fail with it
}

// openReplica opens a Replicate stream to addr, on behalf of app, and
// starts receiving its acknowledgements. The stream ends with ctx.
func openReplica(ctx context.Context, w *Worker, addr, app, token string) (*replicaStream, error) {
	c, err := w.peers.client(addr)
	if err != nil {
		return nil, &ReplicaError{Addr: addr, Err: err}
	}
	ctx = metadata.AppendToOutgoingContext(ctx, MetadataApp, app, MetadataToken, token)
	st, err := c.Replicate(ctx)
	if err != nil {
		return nil, &ReplicaError{Addr: addr, Err: err}
	}
	rs := &replicaStream{addr: addr, stream: st, done: make(chan struct{})}
	if err := w.spawn(rs.receive); err != nil {
		close(rs.done)
		return nil, err
	}
	return rs, nil
}

// send forwards the batches. If the stream is broken, receive reports
// why and fails them.
func (rs *replicaStream) send(ws []*waiter) {
	rs.mu.Lock()
	if err := rs.err; err != nil {
		rs.mu.Unlock()
		for _, wt := range ws {
			wt.complete(err)
		}
		return
	}
	rs.sent = append(rs.sent, ws...)
	rs.mu.Unlock()
	req := &rsspb.PushRequest{Batches: make([]*rsspb.Batch, len(ws))}
	for i, wt := range ws {
		req.Batches[i] = wt.batch
	}
	_ = rs.stream.Send(req) // on failure Recv returns the stream's status
}

// closeSend tells the replica no more batches come.
func (rs *replicaStream) closeSend() { _ = rs.stream.CloseSend() }

// receive applies acknowledgements until the stream ends, then fails
// whatever is still unacknowledged.
func (rs *replicaStream) receive() {
	defer close(rs.done)
	for {
		resp, err := rs.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errReplicaEnded
			}
			rs.fail(&ReplicaError{Addr: rs.addr, Err: err})
			return
		}
		rs.ack(resp.GetAcked())
	}
}

// ack completes the batches the cumulative count n newly covers.
func (rs *replicaStream) ack(n int64) {
	rs.mu.Lock()
	k := int(min(max(n-rs.acked, 0), int64(len(rs.sent))))
	ws := slices.Clone(rs.sent[:k])
	clear(rs.sent[:k]) // the backing array must not keep the batches alive
	rs.sent, rs.acked = rs.sent[k:], max(rs.acked, n)
	rs.mu.Unlock()
	for _, wt := range ws {
		wt.complete(nil)
	}
}

// fail marks the stream dead and fails every unacknowledged batch.
func (rs *replicaStream) fail(err error) {
	rs.mu.Lock()
	rs.err = err
	ws := rs.sent
	rs.sent = nil
	rs.mu.Unlock()
	for _, wt := range ws {
		wt.complete(err)
	}
}
