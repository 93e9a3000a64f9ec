package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/chunkserver/chunkserverpb"
	"basalt/mds/mdspb"
)

// TestSplit checks parts against the arithmetic in the design: segment =
// off / segment size, chunk = (off % segment size) / chunk size, and no
// part crosses a chunk boundary; the parts tile the range in order.
func TestSplit(t *testing.T) {
	g, err := newGeometry(1<<20, 16<<10, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		off, n int64
		want   []part
	}{
		{0, 0, nil},
		{0, 4096, []part{{seg: 0, chunk: 0, chunkOff: 0, bufOff: 0, n: 4096}}},
		{4095, 2, []part{{0, 0, 4095, 0, 1}, {0, 1, 0, 1, 1}}},
		{16<<10 - 1, 4097, []part{{0, 3, 4095, 0, 1}, {1, 0, 0, 1, 4096}}},
		{20<<10 + 5, 10, []part{{1, 1, 5, 0, 10}}},
	}
	for _, tc := range cases {
		if got := g.split(tc.off, tc.n); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("split(%d, %d) = %v, want %v", tc.off, tc.n, got, tc.want)
		}
	}
	for off := int64(0); off < 40<<10; off += 997 {
		checkTiling(t, g, off, 37<<10)
	}
}

// checkTiling checks the invariants of split for one range.
func checkTiling(t *testing.T, g geometry, off, n int64) {
	t.Helper()
	var covered int64
	for _, p := range g.split(off, n) {
		pos := off + p.bufOff
		switch {
		case p.bufOff != covered:
			t.Fatalf("split(%d, %d): part %+v leaves a gap at %d", off, n, p, covered)
		case p.seg != pos/g.segSize || int64(p.chunk) != pos%g.segSize/g.chunkSize || p.chunkOff != pos%g.chunkSize:
			t.Fatalf("split(%d, %d): part %+v misplaced", off, n, p)
		case p.n <= 0 || p.chunkOff+p.n > g.chunkSize:
			t.Fatalf("split(%d, %d): part %+v crosses a chunk boundary", off, n, p)
		}
		covered += p.n
	}
	if covered != n {
		t.Fatalf("split(%d, %d) covers %d bytes", off, n, covered)
	}
}

func TestGeometryChecks(t *testing.T) {
	for _, l := range [][3]uint64{{1 << 20, 0, 4096}, {1 << 20, 4096, 0}, {1 << 20, 6000, 4096}, {1 << 63, 4096, 4096}} {
		if _, err := newGeometry(l[0], l[1], l[2]); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("newGeometry%v = %v, want ErrInvalidArgument", l, err)
		}
	}
	g, _ := newGeometry(8192, 4096, 4096)
	for _, r := range [][2]int64{{-1, 1}, {0, 8193}, {8192, 1}, {1, -1}, {1 << 62, 1 << 62}} {
		if err := g.check(r[0], r[1]); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("check%v = %v, want ErrOutOfRange", r, err)
		}
	}
	if err := g.check(8192, 0); err != nil {
		t.Errorf("check(8192, 0) = %v", err)
	}
}

func notLeaderErr(t *testing.T, addr string) error {
	t.Helper()
	st, err := status.New(codes.FailedPrecondition, "not leader").WithDetails(
		&chunkserverpb.NotLeader{Copyset: 1, LeaderId: 2, LeaderAddress: addr})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestMapStatus(t *testing.T) {
	held := status.Error(codes.FailedPrecondition, `held by "alice"`)
	cases := []struct {
		err       error
		overrides []meaning
		want      error
	}{
		{status.Error(codes.NotFound, "x"), nil, ErrVolumeNotFound},
		{status.Error(codes.OutOfRange, "x"), nil, ErrOutOfRange},
		{status.Error(codes.InvalidArgument, "x"), nil, ErrInvalidArgument},
		{status.Error(codes.Unavailable, "x"), nil, ErrUnavailable},
		{status.Error(codes.DeadlineExceeded, "x"), nil, ErrUnavailable},
		{held, []meaning{{codes.FailedPrecondition, ErrWriterExists}}, ErrWriterExists},
		{held, []meaning{sessionLost()}, ErrLeaseLost},
	}
	for _, tc := range cases {
		got := mapStatus(tc.err, tc.overrides...)
		if !errors.Is(got, tc.want) || status.Code(got) != status.Code(tc.err) {
			t.Errorf("mapStatus(%v) = %v (code %v), want %v keeping the code", tc.err, got, status.Code(got), tc.want)
		}
	}
	if got := mapStatus(held, meaning{codes.FailedPrecondition, ErrWriterExists}).Error(); got != `client: volume has another writer: held by "alice"` {
		t.Errorf("message = %q", got)
	}
	if got := mapStatus(status.Error(codes.NotFound, "x"), meaning{code: codes.NotFound}); errors.Is(got, ErrVolumeNotFound) || status.Code(got) != codes.NotFound {
		t.Errorf("nil override: %v", got)
	}
	if mapStatus(nil) != nil {
		t.Errorf("mapStatus(nil) != nil")
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want verdict
	}{
		{status.Error(codes.Unavailable, "x"), retry},
		{status.Error(codes.DeadlineExceeded, "x"), retry},
		{status.Error(codes.ResourceExhausted, "x"), retry},
		{fmt.Errorf("wrapped: %w", ErrUnavailable), retry},
		{status.Error(codes.NotFound, "x"), stale},
		{status.Error(codes.FailedPrecondition, "fenced"), fail},
		{status.Error(codes.OutOfRange, "x"), fail},
		{status.Error(codes.InvalidArgument, "x"), fail},
		{status.Error(codes.Internal, "x"), fail},
		{errors.New("plain"), fail},
		{notLeaderErr(t, "b:1"), redirect},
	}
	for _, tc := range cases {
		if got, _ := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if _, nl := classify(fmt.Errorf("wrapped: %w", notLeaderErr(t, "b:1"))); nl.GetLeaderAddress() != "b:1" {
		t.Errorf("NotLeader detail lost: %v", nl)
	}
}

// TestBackoff checks the pauses double from 10ms to 500ms, that the
// deadline ends the retries with ErrUnavailable wrapping the cause exactly
// when it passes (fake time), and that a canceled ctx ends a pause.
func TestBackoff(t *testing.T) {
	var got []time.Duration
	for d := time.Duration(0); len(got) < 8; {
		d = nextBackoff(d)
		got = append(got, d)
	}
	if want := "[10ms 20ms 40ms 80ms 160ms 320ms 500ms 500ms]"; fmt.Sprint(got) != want {
		t.Errorf("backoff steps %v, want %v", got, want)
	}
	synctest.Test(t, func(t *testing.T) {
		cause := status.Error(codes.Unavailable, "down")
		start := time.Now()
		s := newRetryState(start.Add(50 * time.Millisecond))
		pauses := 0
		var err error
		for ; err == nil; pauses++ {
			err = s.pause(context.Background(), cause)
		}
		if !errors.Is(err, ErrUnavailable) || status.Code(err) != codes.Unavailable {
			t.Errorf("pause after the deadline = %v", err)
		}
		if d := time.Since(start); d != 50*time.Millisecond || pauses != 3 { // 10 + 20 + 20 (cut)
			t.Errorf("gave up after %v and %d pauses, want 50ms and 3", d, pauses)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := newRetryState(time.Now().Add(time.Hour)).pause(ctx, cause); err != context.Canceled {
			t.Errorf("pause with a canceled ctx = %v", err)
		}
	})
}

// TestCopysetGuesses checks the leader-guess rules: the MDS hint on load,
// skipping a failed member only once, redirects, and refreshes that keep
// a working guess over a hint that did not change.
func TestCopysetGuesses(t *testing.T) {
	c := newCopysetCache()
	pb := &mdspb.Copyset{Id: 7, Leader: 2, Members: []*mdspb.Member{{Id: 1, Address: "a"}, {Id: 2, Address: "b"}, {Id: 3, Address: "c"}}}
	c.merge(pb)
	expect := func(want uint64) {
		t.Helper()
		if m, _ := c.guess(7); m.id != want {
			t.Fatalf("guess = %+v, want member %d", m, want)
		}
	}
	expect(2)
	b := member{2, "b"}
	c.skip(7, b)
	c.skip(7, b) // a second caller that failed on b must not skip c
	expect(3)
	c.merge(pb) // same hint: keep the guess
	expect(3)
	pb.Leader = 1
	c.merge(pb) // new hint: take it
	expect(1)
	if !c.redirect(7, member{1, "a"}, &chunkserverpb.NotLeader{LeaderId: 3, LeaderAddress: "c"}) {
		t.Fatal("redirect with an address reported false")
	}
	expect(3)
	if c.redirect(7, member{3, "c"}, &chunkserverpb.NotLeader{}) {
		t.Fatal("redirect without an address reported true")
	}
	expect(1) // wrapped around
	pb.Members = pb.Members[1:]
	c.merge(pb) // guess 1 is no longer a member, hint 1 unchanged and gone
	expect(2)
}

// TestFlights checks that concurrent callers share one call, and that a
// waiter whose own ctx is live retries when the first caller's ctx ended.
func TestFlights(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g flights[int, int]
		var calls atomic.Int32
		release := make(chan struct{})
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				v, err := g.do(context.Background(), 1, func(context.Context) (int, error) {
					calls.Add(1)
					<-release
					return 42, nil
				})
				if v != 42 || err != nil {
					t.Errorf("do = %d, %v", v, err)
				}
			})
		}
		synctest.Wait() // all 10 are in do, one of them in the call
		close(release)
		wg.Wait()
		if calls.Load() != 1 {
			t.Fatalf("10 concurrent callers made %d calls", calls.Load())
		}
	})
	synctest.Test(t, func(t *testing.T) {
		var g flights[int, int]
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error)
		go func() {
			_, err := g.do(ctx, 2, func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			})
			first <- err
		}()
		synctest.Wait()
		second := make(chan int)
		go func() {
			v, _ := g.do(context.Background(), 2, func(context.Context) (int, error) { return 7, nil })
			second <- v
		}()
		synctest.Wait() // the second caller waits on the first's call
		cancel()
		if err := <-first; err != context.Canceled {
			t.Fatalf("first caller: %v", err)
		}
		if v := <-second; v != 7 {
			t.Fatalf("waiter got %d after the first caller was canceled, want its own call's 7", v)
		}
	})
}

// TestTracker checks that Flush-style waits cover only the writes in
// flight and that close refuses new calls.
func TestTracker(t *testing.T) {
	var tr tracker
	endRead, _ := tr.begin(false)
	endWrite, _ := tr.begin(true)
	if n := len(tr.pending(true)); n != 1 {
		t.Fatalf("%d writes pending, want 1", n)
	}
	endWrite()
	if err := waitAll(context.Background(), tr.pending(true)); err != nil {
		t.Fatal(err)
	}
	pending, first := tr.close()
	if len(pending) != 1 || !first {
		t.Fatalf("close = %d pending, first %v", len(pending), first)
	}
	if _, err := tr.begin(false); !errors.Is(err, ErrClosed) {
		t.Fatalf("begin after close = %v", err)
	}
	endRead()
	if _, first := tr.close(); first {
		t.Fatal("second close reported first")
	}
}
