package simnet_test

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"basalt/internal/simnet"
	"basalt/internal/testwait"
	"basalt/raft"
	"basalt/raft/rafttest"
)

// recorder is the shared recording handler.
type recorder = rafttest.Recorder

func newRecorder() *recorder { return rafttest.NewRecorder() }

// cluster is a network with hosts 1..n, each with a recorder.
type cluster struct {
	net *simnet.Network
	eps map[uint64]*simnet.Endpoint
	hs  map[uint64]*recorder
}

func newCluster(t *testing.T, seed int64, n int) *cluster {
	t.Helper()
	c := &cluster{net: simnet.New(seed), eps: map[uint64]*simnet.Endpoint{}, hs: map[uint64]*recorder{}}
	for h := uint64(1); h <= uint64(n); h++ {
		c.eps[h], c.hs[h] = c.net.Endpoint(h), newRecorder()
		c.eps[h].SetHandler(c.hs[h])
	}
	t.Cleanup(func() {
		c.net.Close()
		if t.Failed() {
			t.Logf("simnet seed %d", c.net.Seed())
		}
	})
	return c
}

// send sends one message with sequence number seq from host from to to.
func (c *cluster) send(from, to, seq uint64) {
	c.eps[from].Send([]raft.Envelope{msg(from, to, seq)})
}

func msg(from, to, seq uint64) raft.Envelope {
	return raft.Envelope{Group: 7, Message: &raftpb.Message{
		Type:    raftpb.MsgApp.Enum(),
		From:    proto.Uint64(from),
		To:      proto.Uint64(to),
		Index:   proto.Uint64(seq),
		Context: []byte{1, 2, 3},
		Entries: []*raftpb.Entry{{Index: proto.Uint64(seq + 1), Data: []byte("payload")}},
	}}
}

// seqs returns the Index of each message.
func seqs(envs []raft.Envelope) []uint64 {
	out := make([]uint64, len(envs))
	for i, e := range envs {
		out[i] = e.Message.GetIndex()
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 10*time.Second, what, cond)
}

// settle waits until the network has decided the fate of every message
// sent so far (delivered or dropped).
func (c *cluster) settle(t *testing.T) simnet.Stats {
	t.Helper()
	var s simnet.Stats
	waitFor(t, "network to settle", func() bool {
		s = c.net.Stats()
		return s.Delivered+s.Dropped == s.Sent+s.Duplicated
	})
	return s
}
