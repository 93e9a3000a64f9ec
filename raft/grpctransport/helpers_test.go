package grpctransport_test

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"basalt/internal/testwait"
	"basalt/raft"
	"basalt/raft/grpctransport"
	"basalt/raft/rafttest"
)

// recorder is the shared recording handler.
type recorder = rafttest.Recorder

func newRecorder() *recorder { return rafttest.NewRecorder() }

// node is a transport with its own gRPC server on 127.0.0.1.
type node struct {
	tr   *grpctransport.Transport
	h    *recorder
	srv  *grpc.Server
	lis  net.Listener
	addr string
}

// newNode creates a node whose server is not serving yet (connections are
// accepted by the kernel but stall until serve). mutate may adjust the
// config.
func newNode(t *testing.T, id uint64, res grpctransport.Resolver, mutate func(*grpctransport.Config)) *node {
	t.Helper()
	cfg := grpctransport.DefaultConfig()
	cfg.HostID, cfg.Resolver = id, res
	cfg.DialTimeout = 2 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	return buildNode(t, cfg, true)
}

// buildNode creates a node for cfg, with a recorder as handler if
// withHandler.
func buildNode(t *testing.T, cfg grpctransport.Config, withHandler bool) *node {
	t.Helper()
	tr, err := grpctransport.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	n := &node{tr: tr, h: newRecorder(), srv: grpc.NewServer(tr.ServerOptions()...), lis: lis, addr: lis.Addr().String()}
	if withHandler {
		tr.SetHandler(n.h)
	}
	tr.Register(n.srv)
	t.Cleanup(n.stop)
	return n
}

// startNode creates a serving node.
func startNode(t *testing.T, id uint64, res grpctransport.Resolver, mutate func(*grpctransport.Config)) *node {
	n := newNode(t, id, res, mutate)
	n.serve()
	return n
}

func (n *node) serve() {
	go func() { _ = n.srv.Serve(n.lis) }()
}

func (n *node) stop() {
	_ = n.tr.Close()
	n.srv.Stop()
	_ = n.lis.Close()
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 15*time.Second, what, cond)
}

// heartbeat builds a message of group from host from to host to; seq makes
// it recognizable.
func heartbeat(from, to, group, seq uint64) raft.Envelope {
	return raft.Envelope{Group: group, Message: &raftpb.Message{
		Type:    raftpb.MsgHeartbeat.Enum(),
		From:    proto.Uint64(from),
		To:      proto.Uint64(to),
		Term:    proto.Uint64(group),
		Commit:  proto.Uint64(seq),
		Context: []byte{byte(seq), byte(group)},
	}}
}

// appendMsg builds a MsgApp carrying one entry of size bytes.
func appendMsg(from, to, group, seq uint64, size int) raft.Envelope {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(seq + uint64(i))
	}
	return raft.Envelope{Group: group, Message: &raftpb.Message{
		Type:    raftpb.MsgApp.Enum(),
		From:    proto.Uint64(from),
		To:      proto.Uint64(to),
		Index:   proto.Uint64(seq),
		Entries: []*raftpb.Entry{{Index: proto.Uint64(seq + 1), Term: proto.Uint64(1), Data: data}},
	}}
}

// clone deep-copies envelopes (Send takes ownership of its argument).
func clone(envs []raft.Envelope) []raft.Envelope {
	out := make([]raft.Envelope, len(envs))
	for i, e := range envs {
		out[i] = raft.Envelope{Group: e.Group, Message: proto.Clone(e.Message).(*raftpb.Message)}
	}
	return out
}

// metric returns the sum of the samples of the named metric whose labels
// include the given name/value pairs.
func metric(t *testing.T, tr *grpctransport.Transport, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tr.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m.GetLabel(), labels) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

type labelPair interface {
	GetName() string
	GetValue() string
}

func hasLabels[L labelPair](pairs []L, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, p := range pairs {
			found = found || (p.GetName() == want[i] && p.GetValue() == want[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}
