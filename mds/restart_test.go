package mds_test

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"

	"basalt/mds"
	"basalt/mds/mdspb"
	"basalt/mds/mdstest"
)

// snapshot is what a restart must keep.
type snapshot struct {
	copysets *mdspb.GetCopysetsResponse
	volumes  *mdspb.ListVolumesResponse
	segments []*mdspb.Segment
	servers  []*mdspb.ChunkserverStatus
}

// populate builds a pool, two volumes with segments and an open writer
// session, and returns the session.
func (e *env) populate() uint64 {
	e.t.Helper()
	e.pool()
	e.createVolume("a", 3*segmentSize)
	e.createVolume("b", segmentSize)
	s := e.openWriter("a", "writer-a")
	must(e.segment("a", 0, true, s))(e.t)
	must(e.segment("a", 2, true, s))(e.t)
	return s
}

func (e *env) snapshot() snapshot {
	e.t.Helper()
	snap := snapshot{
		copysets: must(e.c.GetCopysets(ctx(e.t), &mdspb.GetCopysetsRequest{}))(e.t),
		volumes:  must(e.c.ListVolumes(ctx(e.t), &mdspb.ListVolumesRequest{}))(e.t),
	}
	for _, v := range snap.volumes.GetVolumes() {
		for i := range (v.GetSize() + segmentSize - 1) / segmentSize {
			snap.segments = append(snap.segments, must(e.segment(v.GetName(), i, false, 0))(e.t))
		}
	}
	for _, cs := range e.status().GetChunkservers() {
		snap.servers = append(snap.servers, &mdspb.ChunkserverStatus{Id: cs.GetId(), Address: cs.GetAddress(), Zone: cs.GetZone()})
	}
	return snap
}

func (e *env) checkSnapshot(want snapshot) {
	e.t.Helper()
	got := e.snapshot()
	for i, pair := range [][2]proto.Message{{got.copysets, want.copysets}, {got.volumes, want.volumes}} {
		if !proto.Equal(pair[0], pair[1]) {
			e.t.Errorf("item %d: got %v, want %v", i, pair[0], pair[1])
		}
	}
	if len(got.segments) != len(want.segments) || len(got.servers) != len(want.servers) {
		e.t.Fatalf("got %d segments and %d chunkservers, want %d and %d",
			len(got.segments), len(got.servers), len(want.segments), len(want.servers))
	}
	for i := range want.segments {
		if !proto.Equal(got.segments[i], want.segments[i]) {
			e.t.Errorf("segment %d: got %v, want %v", i, got.segments[i], want.segments[i])
		}
	}
	for i := range want.servers {
		if !proto.Equal(got.servers[i], want.servers[i]) {
			e.t.Errorf("chunkserver %d: got %v, want %v", i, got.servers[i], want.servers[i])
		}
	}
}

// TestRestartKeepsState: a restarted MDS has the same topology, pool,
// volumes, segment maps, open session and counters.
func TestRestartKeepsState(t *testing.T) {
	e := newEnv(t)
	s := e.populate()
	before := e.snapshot()
	maxChunk := maxChunkID(before.segments)
	e.restart()
	e.checkSnapshot(before)
	for _, cs := range e.status().GetChunkservers() {
		if cs.GetAlive() {
			t.Errorf("chunkserver %d alive before any heartbeat", cs.GetId())
		}
	}
	noErr(t, e.renew("a", s))
	if next := e.register("d"); next != 4 {
		t.Errorf("new chunkserver got ID %d, want 4", next)
	}
	seg := must(e.segment("a", 1, true, s))(t)
	if min := minChunkID(seg); min <= maxChunk {
		t.Errorf("new chunk ID %d reuses IDs up to %d", min, maxChunk)
	}
	if next := must(e.open("a", "x", true, true))(t).GetSession(); next <= s {
		t.Errorf("new session %d is not after %d", next, s)
	}
}

// TestCrashKeepsState: everything acknowledged before a crash (the FS
// loses all unsynced data) is there after it.
func TestCrashKeepsState(t *testing.T) {
	fs := vfs.NewCrashableMem()
	e := newEnv(t, func(c *mds.Config) { c.FS = fs })
	e.populate()
	before := e.snapshot()
	e.cfg.FS = fs.CrashClone(vfs.CrashCloneCfg{})
	e.restart()
	e.checkSnapshot(before)
}

// TestGeometryIsFixed: a store created with one chunk size refuses to open
// with another.
func TestGeometryIsFixed(t *testing.T) {
	clock := mdstest.NewClock()
	cfg := mdstest.Config(clock)
	mdstest.Start(t, cfg).Stop()
	cfg.ChunkSize *= 2
	if _, err := mds.New(cfg); !errors.Is(err, mds.ErrInvalidConfig) {
		t.Fatalf("got %v, want ErrInvalidConfig", err)
	}
}

func maxChunkID(segs []*mdspb.Segment) uint64 {
	var m uint64
	for _, s := range segs {
		for _, c := range s.GetChunks() {
			m = max(m, c.GetChunk())
		}
	}
	return m
}

func minChunkID(seg *mdspb.Segment) uint64 {
	m := ^uint64(0)
	for _, c := range seg.GetChunks() {
		m = min(m, c.GetChunk())
	}
	return m
}
