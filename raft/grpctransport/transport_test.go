package grpctransport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"basalt/raft"
	"basalt/raft/grpctransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	mSent      = "basalt_raft_transport_messages_sent_total"
	mReceived  = "basalt_raft_transport_messages_received_total"
	mDropped   = "basalt_raft_transport_messages_dropped_total"
	mBatches   = "basalt_raft_transport_batches_sent_total"
	mBytes     = "basalt_raft_transport_bytes_sent_total"
	mSnapSent  = "basalt_raft_transport_snapshot_bytes_sent_total"
	mSnapRecvd = "basalt_raft_transport_snapshot_bytes_received_total"
)

// TestSendBatchesManyGroups queues the heartbeats of many groups while the
// peer's server is not yet serving: they must arrive intact in one batch.
func TestSendBatchesManyGroups(t *testing.T) {
	res := grpctransport.NewStaticResolver(nil)
	a := startNode(t, 1, res, nil)
	b := newNode(t, 2, res, nil)
	res.Set(2, b.addr)

	var sent []raft.Envelope
	for g := uint64(1); g <= 500; g++ {
		sent = append(sent, heartbeat(1, 2, g, g))
	}
	want := clone(sent)
	a.tr.Send(sent)
	b.serve()
	waitFor(t, "500 messages", func() bool { return b.h.Count() == len(want) })

	got, calls := b.h.Received()
	assertSame(t, got, want)
	if calls != 1 || metric(t, a.tr, mBatches) != 1 {
		t.Errorf("handler calls %d, batches sent %v; want 1 and 1", calls, metric(t, a.tr, mBatches))
	}
	if s, r := metric(t, a.tr, mSent), metric(t, b.tr, mReceived); s != 500 || r != 500 {
		t.Errorf("sent %v received %v, want 500", s, r)
	}
}

// assertSame checks that got equals want, in order.
func assertSame(t *testing.T, got, want []raft.Envelope) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Group != want[i].Group || !proto.Equal(got[i].Message, want[i].Message) {
			t.Fatalf("message %d: got group %d %v, want group %d %v",
				i, got[i].Group, got[i].Message, want[i].Group, want[i].Message)
		}
	}
}

// TestBatchesRespectMaxBatchBytes checks that queued messages are split
// into batches no larger than MaxBatchBytes, in order, and that a message
// that can never fit is dropped.
func TestBatchesRespectMaxBatchBytes(t *testing.T) {
	const limit = 8 << 10
	small := func(c *grpctransport.Config) { c.MaxBatchBytes = limit }
	res := grpctransport.NewStaticResolver(nil)
	a := startNode(t, 1, res, small)
	b := newNode(t, 2, res, small)
	res.Set(2, b.addr)

	var sent []raft.Envelope
	for i := uint64(1); i <= 100; i++ {
		sent = append(sent, appendMsg(1, 2, i%7, i, 1000))
	}
	want := clone(sent)
	a.tr.Send(append(sent, appendMsg(1, 2, 1, 999, 2*limit)))
	b.serve()
	waitFor(t, "100 messages", func() bool { return b.h.Count() == len(want) })

	got, _ := b.h.Received()
	assertSame(t, got, want)
	batches, bytes := metric(t, a.tr, mBatches), metric(t, a.tr, mBytes)
	if bytes > batches*limit || batches < bytes/limit {
		t.Errorf("%v bytes in %v batches exceed %d bytes per batch", bytes, batches, limit)
	}
	if batches < 100*1000/limit {
		t.Errorf("%v batches, want at least %d", batches, 100*1000/limit)
	}
	if d := metric(t, a.tr, mDropped, "reason", "too_large"); d != 1 {
		t.Errorf("too_large drops = %v, want 1", d)
	}
}

// TestDeadPeerReportsUnreachable sends to a host nobody listens for: Send
// must not block, the host must be reported unreachable and the excess
// dropped.
func TestDeadPeerReportsUnreachable(t *testing.T) {
	res := grpctransport.NewStaticResolver(map[uint64]string{2: deadAddr(t)})
	a := startNode(t, 1, res, func(c *grpctransport.Config) { c.QueueSize = 8 })

	start := time.Now()
	for i := uint64(0); i < 20000; i++ {
		a.tr.Send([]raft.Envelope{heartbeat(1, 2, i%10, i)})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20000 Sends took %v; Send blocks", d)
	}
	waitFor(t, "unreachable report", func() bool { return a.h.UnreachableCount(2) > 0 })
	if d := metric(t, a.tr, mDropped); d == 0 {
		t.Errorf("no message counted as dropped")
	}
	if s := metric(t, a.tr, mSent); s != 0 {
		t.Errorf("%v messages counted as sent to a dead host", s)
	}
}

// TestPeerComesBack starts with an unreachable peer, then brings it up at a
// new address: messages must flow again after the redial.
func TestPeerComesBack(t *testing.T) {
	res := grpctransport.NewStaticResolver(map[uint64]string{2: deadAddr(t)})
	a := startNode(t, 1, res, nil)
	a.tr.Send([]raft.Envelope{heartbeat(1, 2, 1, 1)})
	waitFor(t, "unreachable report", func() bool { return a.h.UnreachableCount(2) > 0 })

	b := startNode(t, 2, res, nil)
	res.Set(2, b.addr)
	seq := uint64(1)
	waitFor(t, "delivery after redial", func() bool {
		seq++
		a.tr.Send([]raft.Envelope{heartbeat(1, 2, 1, seq)})
		return b.h.Count() > 0
	})
}

// TestPeerRestarts stops the peer's server and restarts it on the same
// address: the sender must report it and then reconnect.
func TestPeerRestarts(t *testing.T) {
	res := grpctransport.NewStaticResolver(nil)
	a := startNode(t, 1, res, nil)
	b := startNode(t, 2, res, nil)
	res.Set(2, b.addr)
	sendUntil(t, a, 1, func() bool { return b.h.Count() > 0 })

	b.srv.Stop()
	sendUntil(t, a, 100, func() bool { return a.h.UnreachableCount(2) > 0 })

	b2 := newNode(t, 2, res, nil)
	res.Set(2, b2.addr)
	b2.serve()
	sendUntil(t, a, 200, func() bool { return b2.h.Count() > 0 })
}

// sendUntil sends heartbeats from a to host 2 until cond holds.
func sendUntil(t *testing.T, a *node, seq uint64, cond func() bool) {
	t.Helper()
	waitFor(t, "condition while sending", func() bool {
		seq++
		a.tr.Send([]raft.Envelope{heartbeat(1, 2, 1, seq)})
		return cond()
	})
}

// TestWrongHostRejected points host 2's address at host 3: host 3 must
// refuse the batches and the snapshot, and the sender must report host 2
// unreachable.
func TestWrongHostRejected(t *testing.T) {
	res := grpctransport.NewStaticResolver(nil)
	a := startNode(t, 1, res, nil)
	c := startNode(t, 3, res, nil)
	res.Set(2, c.addr)

	sendUntil(t, a, 1, func() bool { return a.h.UnreachableCount(2) > 0 })
	if n := c.h.Count(); n != 0 {
		t.Errorf("wrong host handled %d messages", n)
	}
	if r := metric(t, c.tr, mReceived); r != 0 {
		t.Errorf("wrong host counted %v messages received", r)
	}
	err := a.tr.SendSnapshot(context.Background(), snapMsg(1, 2, 7), bytes.NewReader([]byte("x")))
	if !errors.Is(err, grpctransport.ErrWrongHost) {
		t.Errorf("SendSnapshot to wrong host: %v, want ErrWrongHost", err)
	}
}

// snapMsg builds a MsgSnap for group.
func snapMsg(from, to, group uint64) raft.Envelope {
	return raft.Envelope{Group: group, Message: &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(),
		From: proto.Uint64(from),
		To:   proto.Uint64(to),
		Term: proto.Uint64(3),
		Snapshot: &raftpb.Snapshot{
			Data: []byte("ignored"),
			Metadata: &raftpb.SnapshotMetadata{
				Index:     proto.Uint64(1234),
				Term:      proto.Uint64(3),
				ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}},
			},
		},
	}}
}

// TestSnapshotStreamsIntact sends a snapshot of several MiB in many chunks.
func TestSnapshotStreamsIntact(t *testing.T) {
	res := grpctransport.NewStaticResolver(nil)
	chunks := func(c *grpctransport.Config) { c.SnapshotChunkBytes = 256 << 10 }
	a := startNode(t, 1, res, chunks)
	b := startNode(t, 2, res, chunks)
	res.Set(2, b.addr)

	body := make([]byte, 6<<20+123)
	rand.New(rand.NewSource(1)).Read(body)
	var (
		gotEnv  raft.Envelope
		gotHash [32]byte
	)
	b.h.OnSnapshot = func(_ context.Context, env raft.Envelope, r io.Reader) error {
		data, err := io.ReadAll(r)
		gotEnv, gotHash = env, sha256.Sum256(data)
		return err
	}
	env := snapMsg(1, 2, 7)
	if err := a.tr.SendSnapshot(context.Background(), env, bytes.NewReader(body)); err != nil {
		t.Fatalf("SendSnapshot: %v", err)
	}
	if gotHash != sha256.Sum256(body) {
		t.Errorf("snapshot body corrupted")
	}
	env.Message.Snapshot.Data = nil
	if gotEnv.Group != 7 || !proto.Equal(gotEnv.Message, env.Message) {
		t.Errorf("snapshot envelope %d %v, want 7 %v", gotEnv.Group, gotEnv.Message, env.Message)
	}
	n := float64(len(body))
	if s, r := metric(t, a.tr, mSnapSent), metric(t, b.tr, mSnapRecvd); s != n || r != n {
		t.Errorf("snapshot bytes sent %v received %v, want %v", s, r, n)
	}
}

// TestSnapshotRejected checks that a handler's refusal reaches the sender.
func TestSnapshotRejected(t *testing.T) {
	res := grpctransport.NewStaticResolver(nil)
	a := startNode(t, 1, res, nil)
	b := startNode(t, 2, res, nil)
	res.Set(2, b.addr)
	b.h.OnSnapshot = func(context.Context, raft.Envelope, io.Reader) error {
		return errors.New("disk full")
	}
	err := a.tr.SendSnapshot(context.Background(), snapMsg(1, 2, 7), bytes.NewReader(make([]byte, 3<<20)))
	if !errors.Is(err, grpctransport.ErrSnapshotRejected) {
		t.Errorf("SendSnapshot: %v, want ErrSnapshotRejected", err)
	}
}

// TestSnapshotCutMidway breaks the sender's stream after some chunks: the
// handler's reader must fail with ErrStreamBroken, never a clean EOF.
func TestSnapshotCutMidway(t *testing.T) {
	errBody := errors.New("disk read failed")
	tests := []struct {
		name string
		// body returns the snapshot body and what SendSnapshot must return;
		// cancel cancels SendSnapshot's context.
		body    func(cancel func()) io.Reader
		wantErr error
	}{
		{"body error", func(func()) io.Reader {
			return io.MultiReader(bytes.NewReader(make([]byte, 5<<19)), iotestErrReader{errBody})
		}, errBody},
		{"context cancelled", func(cancel func()) io.Reader {
			return &cancelAfter{n: 3 << 20, cancel: cancel}
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testSnapshotCut(t, tt.body, tt.wantErr) })
	}
}

func testSnapshotCut(t *testing.T, body func(cancel func()) io.Reader, wantErr error) {
	res := grpctransport.NewStaticResolver(nil)
	a := startNode(t, 1, res, nil)
	b := startNode(t, 2, res, nil)
	res.Set(2, b.addr)
	readErr := make(chan error, 1)
	b.h.OnSnapshot = func(_ context.Context, _ raft.Envelope, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		readErr <- err
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := a.tr.SendSnapshot(ctx, snapMsg(1, 2, 7), body(cancel))
	if !errors.Is(err, wantErr) {
		t.Errorf("SendSnapshot: %v, want %v", err, wantErr)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, grpctransport.ErrStreamBroken) {
			t.Errorf("handler read error %v, want ErrStreamBroken", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler never saw the stream break")
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// cancelAfter yields zeros forever and calls cancel once n bytes were read.
type cancelAfter struct {
	n      int
	cancel func()
	once   sync.Once
}

func (r *cancelAfter) Read(p []byte) (int, error) {
	clear(p)
	r.n -= len(p)
	if r.n <= 0 {
		r.once.Do(r.cancel)
	}
	return len(p), nil
}

// TestNoHandlerDropsMessages checks that messages arriving before
// SetHandler are dropped and snapshots refused.
func TestNoHandlerDropsMessages(t *testing.T) {
	res := grpctransport.NewStaticResolver(nil)
	a := startNode(t, 1, res, nil)
	cfg := grpctransport.DefaultConfig()
	cfg.HostID, cfg.Resolver = 2, res
	b := buildNode(t, cfg, false)
	b.serve()
	res.Set(2, b.addr)
	sendUntil(t, a, 1, func() bool { return metric(t, b.tr, mDropped, "reason", "no_handler") > 0 })
	err := a.tr.SendSnapshot(context.Background(), snapMsg(1, 2, 7), bytes.NewReader(nil))
	if !errors.Is(err, grpctransport.ErrUnavailable) {
		t.Errorf("SendSnapshot without handler: %v, want ErrUnavailable", err)
	}
}

// TestClose checks that Close is idempotent, that Send after Close drops
// and that SendSnapshot after Close fails with ErrClosed.
func TestClose(t *testing.T) {
	res := grpctransport.NewStaticResolver(map[uint64]string{2: deadAddr(t)})
	a := startNode(t, 1, res, nil)
	a.tr.Send([]raft.Envelope{heartbeat(1, 2, 1, 1)})
	if err := a.tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	a.tr.Send([]raft.Envelope{heartbeat(1, 2, 1, 2)})
	if d := metric(t, a.tr, mDropped, "reason", "closed"); d != 1 {
		t.Errorf("closed drops = %v, want 1", d)
	}
	err := a.tr.SendSnapshot(context.Background(), snapMsg(1, 2, 7), bytes.NewReader(nil))
	if !errors.Is(err, grpctransport.ErrClosed) {
		t.Errorf("SendSnapshot after Close: %v, want ErrClosed", err)
	}
}

// TestConcurrentSendsManyPeers has three hosts send to each other from
// several goroutines: every message arrives, in order per sender goroutine.
func TestConcurrentSendsManyPeers(t *testing.T) {
	const senders, perSender = 4, 500
	res := grpctransport.NewStaticResolver(nil)
	nodes := make([]*node, 3)
	for i := range nodes {
		nodes[i] = startNode(t, uint64(i+1), res, nil)
		res.Set(uint64(i+1), nodes[i].addr)
	}
	var wg sync.WaitGroup
	for i := range nodes {
		for g := range senders {
			wg.Go(func() { sendToOthers(nodes[i].tr, uint64(i+1), uint64(g), perSender) })
		}
	}
	wg.Wait()
	for i, n := range nodes {
		waitFor(t, "all messages", func() bool { return n.h.Count() == 2*senders*perSender })
		got, _ := n.h.Received()
		assertFIFO(t, uint64(i+1), got)
	}
}

// sendToOthers sends n heartbeats of group from host from to the two other
// hosts of 1..3, one Send per message.
func sendToOthers(tr *grpctransport.Transport, from, group uint64, n int) {
	for seq := uint64(1); seq <= uint64(n); seq++ {
		for to := uint64(1); to <= 3; to++ {
			if to != from {
				tr.Send([]raft.Envelope{heartbeat(from, to, group, seq)})
			}
		}
	}
}

// assertFIFO checks that messages from each (sender, group) pair arrived
// in sequence.
func assertFIFO(t *testing.T, host uint64, got []raft.Envelope) {
	t.Helper()
	type key struct{ from, group uint64 }
	last := make(map[key]uint64)
	for _, env := range got {
		k := key{env.Message.GetFrom(), env.Group}
		if seq := env.Message.GetCommit(); seq != last[k]+1 {
			t.Fatalf("host %d: from %d group %d: seq %d after %d", host, k.from, k.group, seq, last[k])
		}
		last[k]++
	}
}
