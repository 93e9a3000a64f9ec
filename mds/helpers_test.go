package mds_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"basalt/mds"
	"basalt/mds/mdspb"
	"basalt/mds/mdstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one test's MDS, its clock and its config (for restarts).
type env struct {
	t     *testing.T
	clock *mdstest.Clock
	cfg   mds.Config
	mds   *mdstest.MDS
	c     mdspb.MDSClient
}

// newEnv starts an MDS with the test config, adjusted by opts.
func newEnv(t *testing.T, opts ...func(*mds.Config)) *env {
	t.Helper()
	clock := mdstest.NewClock()
	cfg := mdstest.Config(clock)
	for _, o := range opts {
		o(&cfg)
	}
	e := &env{t: t, clock: clock, cfg: cfg}
	e.start()
	return e
}

func (e *env) start() {
	e.t.Helper()
	e.mds = mdstest.Start(e.t, e.cfg)
	e.c = e.mds.Client
}

// restart stops the MDS and starts a new one on the same store.
func (e *env) restart() {
	e.t.Helper()
	e.mds.Stop()
	e.start()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// must(f())(t) returns f's value, failing the test if f failed.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

// noErr fails the test if err is not nil.
func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// wantErr checks that err, mapped back with FromStatus, matches target and
// carries the gRPC code.
func wantErr(t *testing.T, err error, target error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("got code %v (%v), want %v", got, err, code)
	}
	if !errors.Is(mds.FromStatus(err), target) {
		t.Errorf("got %v, want an error matching %v", err, target)
	}
}

// register registers a chunkserver in zone and returns its ID.
func (e *env) register(zone string) uint64 {
	e.t.Helper()
	n := len(must(e.c.ClusterStatus(ctx(e.t), &mdspb.ClusterStatusRequest{}))(e.t).GetChunkservers())
	resp := must(e.c.RegisterChunkserver(ctx(e.t), &mdspb.RegisterChunkserverRequest{
		Address: fmt.Sprintf("10.0.0.%d:6800", n+1), Zone: zone, Capacity: 1 << 40,
	}))(e.t)
	return resp.GetId()
}

// pool registers three chunkservers in zones a, b and c.
func (e *env) pool() []uint64 {
	e.t.Helper()
	return []uint64{e.register("a"), e.register("b"), e.register("c")}
}

// heartbeat sends a heartbeat from id reporting states and acking deleted.
func (e *env) heartbeat(id uint64, states []*mdspb.CopysetState, deleted ...uint64) *mdspb.HeartbeatResponse {
	e.t.Helper()
	return must(e.c.Heartbeat(ctx(e.t), &mdspb.HeartbeatRequest{
		Id: id, Capacity: 1 << 40, Used: 1 << 30, Copysets: states, DeletedChunks: deleted,
	}))(e.t)
}

// copysetIDs returns the IDs of every copyset.
func (e *env) copysetIDs() []uint64 {
	e.t.Helper()
	var ids []uint64
	for _, c := range must(e.c.GetCopysets(ctx(e.t), &mdspb.GetCopysetsRequest{}))(e.t).GetCopysets() {
		ids = append(ids, c.GetId())
	}
	return ids
}

// states reports role for each copyset in ids, at term, with leader.
func states(ids []uint64, role string, term, leader uint64) []*mdspb.CopysetState {
	out := make([]*mdspb.CopysetState, len(ids))
	for i, id := range ids {
		out[i] = &mdspb.CopysetState{Id: id, Role: role, Term: term, Leader: leader}
	}
	return out
}

func (e *env) status() *mdspb.ClusterStatusResponse {
	e.t.Helper()
	return must(e.c.ClusterStatus(ctx(e.t), &mdspb.ClusterStatusRequest{}))(e.t)
}

// createVolume creates a volume of size bytes.
func (e *env) createVolume(name string, size uint64) *mdspb.Volume {
	e.t.Helper()
	return must(e.c.CreateVolume(ctx(e.t), &mdspb.CreateVolumeRequest{Name: name, Size: size, Owner: "test"}))(e.t)
}

// openWriter opens name as a writer for client and returns the session.
func (e *env) openWriter(name, client string) uint64 {
	e.t.Helper()
	return must(e.c.OpenVolume(ctx(e.t), &mdspb.OpenVolumeRequest{Volume: name, Writer: true, Client: client}))(e.t).GetSession()
}

// segment gets a segment, allocating it with session if allocate.
func (e *env) segment(name string, index uint64, allocate bool, session uint64) (*mdspb.Segment, error) {
	return e.c.GetSegment(ctx(e.t), &mdspb.GetSegmentRequest{Volume: name, Index: index, Allocate: allocate, Session: session})
}

// chunkSize and segmentSize of the test config.
const (
	chunkSize   = 64 << 10
	segmentSize = 1 << 20
	perSegment  = segmentSize / chunkSize
)

func codeOf(err error) codes.Code { return status.Code(err) }
