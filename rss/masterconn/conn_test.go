package masterconn_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"basalt/internal/testnet"
	"basalt/rss/masterconn"
	"basalt/rss/rsspb"
)

// fakeMaster answers Status with answer(), counting calls. It stands in
// for a master's failover behaviour only; the real masters fail over in
// internal/e2e (TestShuffleMasterFailover).
type fakeMaster struct {
	rsspb.UnimplementedMasterServer
	calls  atomic.Int64
	answer atomic.Pointer[func(ctx context.Context) error]
}

func (f *fakeMaster) Status(ctx context.Context, _ *rsspb.StatusRequest) (*rsspb.StatusResponse, error) {
	f.calls.Add(1)
	if err := (*f.answer.Load())(ctx); err != nil {
		return nil, err
	}
	return &rsspb.StatusResponse{}, nil
}

func (f *fakeMaster) set(fn func(ctx context.Context) error) { f.answer.Store(&fn) }

// serveFake serves a fakeMaster answering ok until set otherwise.
func serveFake(t *testing.T) (*fakeMaster, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMaster{}
	f.set(func(context.Context) error { return nil })
	gs := grpc.NewServer()
	rsspb.RegisterMasterServer(gs, f)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return f, lis.Addr().String()
}

// notLeader answers as a follower naming leader does.
func notLeader(leader string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(masterconn.TrailerServed, "1", masterconn.TrailerLeader, leader))
		return status.Error(codes.Unavailable, "not the leader")
	}
}

// served answers with a master's own error of code c.
func served(c codes.Code) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(masterconn.TrailerServed, "1"))
		return status.Error(c, "the master's own answer")
	}
}

func dial(t *testing.T, window time.Duration, addrs ...string) rsspb.MasterClient {
	t.Helper()
	c, err := masterconn.Dial(addrs, window, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return rsspb.NewMasterClient(c)
}

func status1(t *testing.T, mc rsspb.MasterClient) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := mc.Status(ctx, &rsspb.StatusRequest{})
	return err
}

// TestFailsOverToTheLeader: the first address is dead and the second a
// follower naming the leader (the third); the call lands on the leader,
// and the next call goes straight there.
func TestFailsOverToTheLeader(t *testing.T) {
	follower, fAddr := serveFake(t)
	leader, lAddr := serveFake(t)
	follower.set(notLeader(lAddr))
	mc := dial(t, 5*time.Second, testnet.FreeAddr(t), fAddr, lAddr)
	if err := status1(t, mc); err != nil {
		t.Fatalf("call across a dead master and a follower: %v", err)
	}
	if err := status1(t, mc); err != nil {
		t.Fatal(err)
	}
	if f, l := follower.calls.Load(), leader.calls.Load(); f != 1 || l != 2 {
		t.Fatalf("follower served %d calls and the leader %d; want 1 and 2 (the second straight to the leader)", f, l)
	}

	// Leadership moves back to the follower: the old leader now names it.
	follower.set(func(context.Context) error { return nil })
	leader.set(notLeader(fAddr))
	if err := status1(t, mc); err != nil {
		t.Fatal(err)
	}
	if f := follower.calls.Load(); f != 2 {
		t.Fatalf("the new leader served %d calls, want 2", f)
	}
}

// TestServedErrorsAreNotRetried: a master's own error, Unavailable
// included, is the answer: no other master is asked.
func TestServedErrorsAreNotRetried(t *testing.T) {
	for _, code := range []codes.Code{codes.Unavailable, codes.NotFound, codes.PermissionDenied} {
		a, aAddr := serveFake(t)
		b, bAddr := serveFake(t)
		a.set(served(code))
		err := status1(t, dial(t, 5*time.Second, aAddr, bAddr))
		if status.Code(err) != code || a.calls.Load() != 1 || b.calls.Load() != 0 {
			t.Fatalf("%v from the first master: got %v after %d and %d calls; want it returned after one call", code, err, a.calls.Load(), b.calls.Load())
		}
	}
}

// TestNoLeaderWithinTheWindow: masters that keep refusing (no leader
// elected) are retried with backoff until the window ends, then the call
// fails Unavailable; a leader elected within the window is found.
func TestNoLeaderWithinTheWindow(t *testing.T) {
	a, aAddr := serveFake(t)
	b, bAddr := serveFake(t)
	a.set(notLeader(""))
	b.set(notLeader(""))
	start := time.Now()
	err := status1(t, dial(t, 700*time.Millisecond, aAddr, bAddr))
	if took := time.Since(start); status.Code(err) != codes.Unavailable || took < 700*time.Millisecond || took > 5*time.Second {
		t.Fatalf("no leader: %v after %v; want Unavailable after the 700ms window", err, took)
	}
	if n := a.calls.Load() + b.calls.Load(); n < 4 {
		t.Fatalf("%d calls within the window, want several rounds", n)
	}

	time.AfterFunc(300*time.Millisecond, func() { b.set(func(context.Context) error { return nil }) })
	if err := status1(t, dial(t, 5*time.Second, aAddr, bAddr)); err != nil {
		t.Fatalf("a leader elected within the window: %v", err)
	}
}

// TestOneAddressDoesNotFailOver: with a single master an Unavailable
// answer is returned as it is.
func TestOneAddressDoesNotFailOver(t *testing.T) {
	a, aAddr := serveFake(t)
	a.set(notLeader(""))
	if err := status1(t, dial(t, 5*time.Second, aAddr)); status.Code(err) != codes.Unavailable || a.calls.Load() != 1 {
		t.Fatalf("got %v after %d calls, want Unavailable after 1", err, a.calls.Load())
	}
	if _, err := masterconn.Dial(masterconn.Split(" , "), time.Second); err == nil {
		t.Fatal("Dial of no address succeeded")
	}
}
