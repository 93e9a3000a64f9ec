package simnet_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"basalt/internal/simnet"
	"basalt/raft"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDeliversInOrderWithoutDelay(t *testing.T) {
	c := newCluster(t, 1, 3)
	for seq := uint64(1); seq <= 1000; seq++ {
		c.send(1, 2, seq)
	}
	s := c.settle(t)
	got := seqs(c.hs[2].Messages())
	if len(got) != 1000 || !slices.IsSorted(got) {
		t.Fatalf("got %d messages (sorted: %v), want 1000 in order", len(got), slices.IsSorted(got))
	}
	if s.Delivered != 1000 || s.Dropped != 0 || c.hs[3].Count() != 0 {
		t.Errorf("stats %+v, host 3 got %d", s, c.hs[3].Count())
	}
}

func TestMessagesAreCopies(t *testing.T) {
	c := newCluster(t, 1, 2)
	c.net.SetDuplicateRate(1)
	env := msg(1, 2, 1)
	want := proto.Clone(env.Message)
	c.eps[1].Send([]raft.Envelope{env})
	env.Message.Context[0] = 99 // the sender reuses its buffer
	waitFor(t, "two copies", func() bool { return c.hs[2].Count() == 2 })

	got := c.hs[2].Messages()
	if !proto.Equal(got[0].Message, want) || !proto.Equal(got[1].Message, want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	got[0].Message.Context[0] = 42
	if got[1].Message.Context[0] != 1 {
		t.Errorf("duplicate copies share memory")
	}
}

func TestPartitionBlocksAndHealRestores(t *testing.T) {
	c := newCluster(t, 1, 3)
	c.net.Partition([]uint64{1}, []uint64{2, 3})
	c.send(1, 2, 1)
	c.send(2, 3, 2)
	c.send(3, 1, 3)
	s := c.settle(t)
	if c.hs[2].Count() != 0 || c.hs[1].Count() != 0 || c.hs[3].Count() != 1 || s.Dropped != 2 {
		t.Fatalf("across partition: host1 %d host2 %d host3 %d, stats %+v",
			c.hs[1].Count(), c.hs[2].Count(), c.hs[3].Count(), s)
	}
	waitFor(t, "unreachable reports", func() bool {
		return c.hs[1].UnreachableCount(2) > 0 && c.hs[3].UnreachableCount(1) > 0
	})

	c.net.Heal()
	c.send(1, 2, 4)
	waitFor(t, "delivery after heal", func() bool { return c.hs[2].Count() == 1 })
}

func TestIsolate(t *testing.T) {
	c := newCluster(t, 1, 3)
	c.net.Isolate(3)
	c.send(1, 2, 1)
	c.send(1, 3, 2)
	c.send(3, 2, 3)
	c.settle(t)
	if c.hs[2].Count() != 1 || c.hs[3].Count() != 0 {
		t.Fatalf("host 2 got %d (want 1), isolated host 3 got %d", c.hs[2].Count(), c.hs[3].Count())
	}
}

func TestDisconnectDropsToAndFrom(t *testing.T) {
	c := newCluster(t, 1, 3)
	c.net.Disconnect(2)
	c.send(1, 2, 1)
	c.send(2, 3, 2)
	c.send(1, 3, 3)
	c.settle(t)
	if c.hs[2].Count() != 0 || c.hs[3].Count() != 1 {
		t.Fatalf("down host got %d, host 3 got %d (want 1)", c.hs[2].Count(), c.hs[3].Count())
	}
	waitFor(t, "unreachable report", func() bool { return c.hs[1].UnreachableCount(2) > 0 })

	c.net.Reconnect(2)
	c.send(1, 2, 4)
	c.send(2, 3, 5)
	waitFor(t, "delivery after reconnect", func() bool { return c.hs[2].Count() == 1 && c.hs[3].Count() == 2 })
}

// TestDisconnectDropsInFlight checks that delayed messages to a host that
// goes down before they land are lost.
func TestDisconnectDropsInFlight(t *testing.T) {
	c := newCluster(t, 1, 2)
	c.net.SetDelay(50*time.Millisecond, 50*time.Millisecond)
	c.send(1, 2, 1)
	c.net.Disconnect(2)
	s := c.settle(t)
	if c.hs[2].Count() != 0 || s.Dropped != 1 {
		t.Fatalf("in-flight message delivered to a down host (stats %+v)", s)
	}
}

func TestDuplicateRate(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.net.SetDuplicateRate(0.5)
	for seq := uint64(1); seq <= 200; seq++ {
		c.send(1, 2, seq)
	}
	s := c.settle(t)
	if s.Duplicated == 0 || s.Duplicated == 200 {
		t.Fatalf("duplicated %d of 200 at rate 0.5", s.Duplicated)
	}
	if got := uint64(c.hs[2].Count()); got != 200+s.Duplicated {
		t.Errorf("delivered %d, want %d", got, 200+s.Duplicated)
	}
}

func TestDropRate(t *testing.T) {
	c := newCluster(t, 3, 2)
	c.net.SetDropRate(0.3)
	for seq := uint64(1); seq <= 500; seq++ {
		c.send(1, 2, seq)
	}
	s := c.settle(t)
	if s.Dropped < 100 || s.Dropped > 200 {
		t.Errorf("dropped %d of 500 at rate 0.3", s.Dropped)
	}
	if c.hs[1].UnreachableCount(2) != 0 {
		t.Errorf("random drops reported as unreachable")
	}
}

// TestSameSeedSameDrops replays the same sends on two networks with the
// same seed: the same messages must be dropped and duplicated.
func TestSameSeedSameDrops(t *testing.T) {
	run := func(seed int64) []uint64 {
		c := newCluster(t, seed, 2)
		c.net.SetDropRate(0.4)
		c.net.SetDuplicateRate(0.2)
		for seq := uint64(1); seq <= 300; seq++ {
			c.send(1, 2, seq)
		}
		c.settle(t)
		return seqs(c.hs[2].Messages())
	}
	a, b, other := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Errorf("seed 42 gave different deliveries:\n%v\n%v", a, b)
	}
	if slices.Equal(a, other) {
		t.Errorf("seeds 42 and 43 gave the same deliveries")
	}
}

func TestDelayReorders(t *testing.T) {
	c := newCluster(t, 5, 2)
	c.net.SetDelay(0, 20*time.Millisecond)
	for seq := uint64(1); seq <= 200; seq++ {
		c.send(1, 2, seq)
	}
	c.settle(t)
	got := seqs(c.hs[2].Messages())
	if len(got) != 200 || slices.IsSorted(got) {
		t.Errorf("got %d messages, sorted %v; want 200 reordered", len(got), slices.IsSorted(got))
	}
}

// lockingHandler takes mu in every callback: a Send made while holding mu
// deadlocks if the network calls a handler synchronously.
type lockingHandler struct {
	mu *sync.Mutex
	*recorder
}

func (h lockingHandler) HandleMessages(msgs []raft.Envelope) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recorder.HandleMessages(msgs)
}

func (h lockingHandler) HandleUnreachable(host uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recorder.HandleUnreachable(host)
}

func TestSendNeverCallsHandler(t *testing.T) {
	net := simnet.New(1)
	defer net.Close()
	var mu sync.Mutex
	r1, r2 := newRecorder(), newRecorder()
	ep1, ep2 := net.Endpoint(1), net.Endpoint(2)
	ep1.SetHandler(lockingHandler{&mu, r1})
	ep2.SetHandler(lockingHandler{&mu, r2})
	done := make(chan struct{})
	go func() {
		defer close(done)
		mu.Lock()
		defer mu.Unlock()
		ep1.Send([]raft.Envelope{msg(1, 1, 1), msg(1, 2, 2), msg(1, 9, 3)})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Send called a handler synchronously")
	}
	waitFor(t, "async delivery", func() bool {
		return r1.Count() == 1 && r2.Count() == 1 && r1.UnreachableCount(9) == 1
	})
}

func TestSnapshotIntact(t *testing.T) {
	c := newCluster(t, 1, 2)
	body := make([]byte, 3<<20+5)
	rand.New(rand.NewSource(1)).Read(body)
	var got [32]byte
	var gotEnv raft.Envelope
	c.hs[2].OnSnapshot = func(_ context.Context, env raft.Envelope, r io.Reader) error {
		data, err := io.ReadAll(r)
		got, gotEnv = sha256.Sum256(data), env
		return err
	}
	env := msg(1, 2, 10)
	if err := c.eps[1].SendSnapshot(context.Background(), env, bytes.NewReader(body)); err != nil {
		t.Fatalf("SendSnapshot: %v", err)
	}
	if got != sha256.Sum256(body) || !proto.Equal(gotEnv.Message, env.Message) || gotEnv.Message == env.Message {
		t.Errorf("snapshot arrived corrupted or not copied")
	}
	if s := c.net.Stats(); s.Snapshots != 1 || s.SnapshotsFailed != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestSnapshotFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*simnet.Network)
		want  error
	}{
		{"partitioned", func(n *simnet.Network) { n.Partition([]uint64{1}, []uint64{2}) }, simnet.ErrUnreachable},
		{"down", func(n *simnet.Network) { n.Disconnect(2) }, simnet.ErrUnreachable},
		{"dropped", func(n *simnet.Network) { n.SetDropRate(1) }, simnet.ErrDropped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 1, 2)
			tt.fault(c.net)
			err := c.eps[1].SendSnapshot(context.Background(), msg(1, 2, 1), bytes.NewReader([]byte("x")))
			if !errors.Is(err, tt.want) {
				t.Errorf("SendSnapshot: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSnapshotRejected(t *testing.T) {
	c := newCluster(t, 1, 2)
	refusal := errors.New("disk full")
	c.hs[2].OnSnapshot = func(context.Context, raft.Envelope, io.Reader) error { return refusal }
	err := c.eps[1].SendSnapshot(context.Background(), msg(1, 2, 1), bytes.NewReader(make([]byte, 1<<20)))
	if !errors.Is(err, simnet.ErrSnapshotRejected) || !errors.Is(err, refusal) {
		t.Errorf("SendSnapshot: %v, want ErrSnapshotRejected wrapping the refusal", err)
	}
}

// TestSnapshotCutMidway takes the receiver down while it reads: both sides
// must see an error, the reader never a clean EOF.
func TestSnapshotCutMidway(t *testing.T) {
	c := newCluster(t, 1, 2)
	readErr := make(chan error, 1)
	c.hs[2].OnSnapshot = func(_ context.Context, _ raft.Envelope, r io.Reader) error {
		if _, err := io.ReadFull(r, make([]byte, 1<<20)); err != nil {
			readErr <- err
			return err
		}
		c.net.Disconnect(2)
		_, err := io.Copy(io.Discard, r)
		readErr <- err
		return err
	}
	err := c.eps[1].SendSnapshot(context.Background(), msg(1, 2, 1), bytes.NewReader(make([]byte, 4<<20)))
	if !errors.Is(err, simnet.ErrUnreachable) {
		t.Errorf("SendSnapshot: %v, want ErrUnreachable", err)
	}
	if err := <-readErr; !errors.Is(err, simnet.ErrUnreachable) {
		t.Errorf("handler read error %v, want ErrUnreachable", err)
	}
}

func TestSnapshotContextCancelled(t *testing.T) {
	c := newCluster(t, 1, 2)
	ctx, cancel := context.WithCancel(context.Background())
	readErr := make(chan error, 1)
	c.hs[2].OnSnapshot = func(_ context.Context, _ raft.Envelope, r io.Reader) error {
		_, err := io.ReadFull(r, make([]byte, 1<<20))
		if err == nil {
			cancel()
			_, err = io.Copy(io.Discard, r)
		}
		readErr <- err
		return err
	}
	err := c.eps[1].SendSnapshot(ctx, msg(1, 2, 1), &zeros{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("SendSnapshot: %v, want context.Canceled", err)
	}
	if err := <-readErr; err == nil {
		t.Errorf("handler read the cancelled stream to a clean EOF")
	}
}

// zeros is an endless body.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestCloseStopsEverything(t *testing.T) {
	c := newCluster(t, 1, 2)
	c.net.SetDelay(time.Hour, time.Hour)
	for seq := uint64(1); seq <= 10; seq++ {
		c.send(1, 2, seq)
	}
	c.net.Close()
	c.net.Close()
	c.send(1, 2, 11)
	if s := c.net.Stats(); s.Dropped != 1 || s.Delivered != 0 {
		t.Errorf("stats after Close %+v", s)
	}
	err := c.eps[1].SendSnapshot(context.Background(), msg(1, 2, 1), bytes.NewReader(nil))
	if !errors.Is(err, simnet.ErrClosed) {
		t.Errorf("SendSnapshot after Close: %v, want ErrClosed", err)
	}
}
