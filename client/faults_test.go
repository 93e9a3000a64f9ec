package client_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"basalt/client"
	"basalt/client/clienttest"
)

// follower returns a member of copyset other than its leader.
func follower(c *clienttest.Cluster, copyset uint64) uint64 {
	for _, id := range c.Members(copyset) {
		if id != c.Leader(copyset) {
			return id
		}
	}
	return 0
}

// TestNotLeaderRedirect: the MDS's hint names a follower, which answers
// NotLeader with the leader's address; the client follows it.
func TestNotLeaderRedirect(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 1})
	f := follower(c, 1)
	c.MDS.SetLeaderHint(1, f)
	v := writer(t, c)
	data := randBytes(5, chunk)
	mustWrite(t, v, data, 0)
	checkRead(t, v, 0, data)
	if c.Chunkserver(f).Calls() != 1 {
		t.Fatalf("the follower got %d calls, want exactly 1 (then the client should stick to the leader)",
			c.Chunkserver(f).Calls())
	}
	if c.Chunkserver(c.Leader(1)).Calls() != 2 {
		t.Fatalf("the leader got %d calls, want 2", c.Chunkserver(c.Leader(1)).Calls())
	}
	if got := metricValue(t, v, "basalt_client_redirects_total"); got != 1 {
		t.Fatalf("basalt_client_redirects_total = %v, want 1", got)
	}
}

// TestLeaderMoves: after the client learnt a leader, leadership moves;
// the old leader redirects, or (during an "election") names no leader and
// the client tries the other members.
func TestLeaderMoves(t *testing.T) {
	for _, hide := range []bool{false, true} {
		t.Run(map[bool]string{false: "named", true: "unknown"}[hide], func(t *testing.T) {
			c := startCluster(t, clienttest.Config{Copysets: 1})
			v := writer(t, c)
			old := c.Leader(1)
			mustWrite(t, v, []byte{1}, 0)
			c.Chunkserver(old).HideLeader(hide)
			c.SetLeader(1, c.Members(1)[2])
			data := randBytes(6, 100)
			mustWrite(t, v, data, 10)
			checkRead(t, v, 10, data)
		})
	}
}

// metricValue registers v's collectors on a fresh registry and returns the
// value of the counter name.
func metricValue(t *testing.T, v *client.Volume, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(v.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// TestElection: for a while no member knows the leader (every answer is
// NotLeader without an address); the client cycles through the members
// with backoff until one leads.
func TestElection(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 1})
	v := writer(t, c)
	mustWrite(t, v, []byte{1}, 0)
	next := c.Members(1)[1]
	c.SetLeader(1, 0)
	before := c.DataCalls()
	elected := time.AfterFunc(150*time.Millisecond, func() { c.SetLeader(1, next) })
	defer elected.Stop()
	checkRead(t, v, 0, []byte{1})
	if n := c.DataCalls() - before; n < 2 || n > 20 {
		t.Fatalf("made %d calls during a 150ms election, want a few (backoff, not a spin)", n)
	}
}

// TestDeadLeader: the leader stops and another member takes over; the MDS
// still names the dead one. The client moves on and succeeds well within
// its deadline.
func TestDeadLeader(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 1})
	v := writer(t, c)
	data := randBytes(7, 3*chunk)
	mustWrite(t, v, data, 0)
	dead := c.Leader(1)
	c.Chunkserver(dead).Stop()
	c.SetLeader(1, c.Members(1)[2])
	c.MDS.SetLeaderHint(1, dead)
	start := time.Now()
	checkRead(t, v, 0, data)
	more := randBytes(8, 100)
	mustWrite(t, v, more, 50)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failover took %v", d)
	}
	// A fresh client, whose first guess is the dead leader, gets there too.
	r := openVolume(t, options(c, false))
	copy(data[50:], more)
	checkRead(t, r, 0, data)
}

// TestTransientFailuresRetried: Unavailable (and other retryable codes)
// from every member a few times, then success.
func TestTransientFailuresRetried(t *testing.T) {
	for _, code := range []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted} {
		t.Run(code.String(), func(t *testing.T) {
			c := startCluster(t, clienttest.Config{Copysets: 1})
			v := writer(t, c)
			for _, cs := range c.Chunkservers {
				cs.FailNext(2, code)
			}
			data := randBytes(9, 2*chunk)
			mustWrite(t, v, data, 0)
			checkRead(t, v, 0, data)
		})
	}
}

// TestSlowLeaderTimesOut: a leader slower than RPCTimeout is abandoned for
// the other members once leadership moves.
func TestSlowLeaderTimesOut(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 1})
	o := options(c, true)
	o.RPCTimeout = 50 * time.Millisecond
	v := openVolume(t, o)
	mustWrite(t, v, []byte{1}, 0)
	slow := c.Leader(1)
	c.Chunkserver(slow).SetDelay(time.Hour)
	c.SetLeader(1, c.Members(1)[1])
	c.MDS.SetLeaderHint(1, slow)
	checkRead(t, v, 0, []byte{1})
}

// TestGiveUpAfterRetryDeadline: with every member down, a call fails with
// ErrUnavailable once RetryDeadline has passed, not much later.
func TestGiveUpAfterRetryDeadline(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 1})
	o := options(c, true)
	o.RetryDeadline = 300 * time.Millisecond
	v := openVolume(t, o)
	mustWrite(t, v, []byte{1}, 0)
	for _, cs := range c.Chunkservers {
		cs.Stop()
	}
	start := time.Now()
	_, err := v.ReadAt(context.Background(), make([]byte, 10), 0)
	d := time.Since(start)
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("ReadAt with every member down = %v, want ErrUnavailable", err)
	}
	if d < o.RetryDeadline || d > o.RetryDeadline+time.Second {
		t.Fatalf("gave up after %v, want about %v", d, o.RetryDeadline)
	}
	t.Logf("gave up after %v: %v", d, err)
}

// TestPermanentErrorsNotRetried: InvalidArgument and OutOfRange from a
// chunkserver are returned at once, translated.
func TestPermanentErrorsNotRetried(t *testing.T) {
	for code, want := range map[codes.Code]error{codes.InvalidArgument: client.ErrInvalidArgument, codes.OutOfRange: client.ErrOutOfRange} {
		t.Run(code.String(), func(t *testing.T) {
			c := startCluster(t, clienttest.Config{Copysets: 1})
			v := writer(t, c)
			mustWrite(t, v, []byte{1}, 0)
			c.Chunkserver(c.Leader(1)).FailNext(1, code)
			before := c.DataCalls()
			_, err := v.ReadAt(context.Background(), make([]byte, 10), 0)
			if !errors.Is(err, want) {
				t.Fatalf("ReadAt = %v, want %v", err, want)
			}
			if n := c.DataCalls() - before; n != 1 {
				t.Fatalf("made %d chunkserver calls, want 1", n)
			}
		})
	}
}

// TestMDSFailover: the first MDS address is dead; Open and I/O use the
// second. A transiently failing MDS is retried.
func TestMDSFailover(t *testing.T) {
	c := startCluster(t, clienttest.Config{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	_ = lis.Close()
	o := options(c, true)
	o.MDSAddrs = []string{dead, c.MDS.Addr()}
	c.MDS.FailNext(2, codes.Unavailable)
	v := openVolume(t, o)
	data := randBytes(10, 2*segment)
	c.MDS.FailNext(3, codes.Unavailable)
	mustWrite(t, v, data, 0)
	checkRead(t, v, 0, data)
}

// TestContextExpiry: a call whose ctx ends returns ctx.Err().
func TestContextExpiry(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 1})
	v := writer(t, c)
	mustWrite(t, v, []byte{1}, 0)
	c.Chunkserver(c.Leader(1)).SetDelay(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.WriteAt(ctx, []byte{2}, 0); err != context.DeadlineExceeded {
		t.Fatalf("WriteAt with an expiring ctx = %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := v.ReadAt(ctx, make([]byte, 1), 0); err != context.Canceled {
		t.Fatalf("ReadAt with a canceled ctx = %v, want context.Canceled", err)
	}
}

// TestFlushWaitsForWrites: Flush returns only after a write in flight
// returned.
func TestFlushWaitsForWrites(t *testing.T) {
	c := startCluster(t, clienttest.Config{Copysets: 1})
	v := writer(t, c)
	mustWrite(t, v, []byte{1}, 0)
	c.Chunkserver(c.Leader(1)).SetDelay(200 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = v.WriteAt(context.Background(), []byte{2}, 0)
	}()
	eventually(t, 5*time.Second, "the write to reach the chunkserver", func() bool { return c.DataCalls() == 2 })
	if err := v.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	select {
	case <-done:
	default:
		t.Fatalf("Flush returned before the write in flight")
	}
}
