package mds_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"basalt/mds"
	"basalt/mds/mdspb"
)

// TestPoolCreatedAcrossZones registers three chunkservers in three zones:
// the pool appears with the third, every copyset has one member per zone,
// and each heartbeat lists the server's copysets with member addresses.
func TestPoolCreatedAcrossZones(t *testing.T) {
	e := newEnv(t)
	e.register("a")
	e.register("b")
	if n := e.status().GetCopysets(); n != 0 {
		t.Fatalf("pool created with two chunkservers: %d copysets", n)
	}
	e.register("c")
	st := e.status()
	if st.GetCopysets() != 10 { // 10 per server * 3 servers / 3 replicas
		t.Fatalf("got %d copysets, want 10", st.GetCopysets())
	}
	zoneOf := map[uint64]string{}
	for _, cs := range st.GetChunkservers() {
		zoneOf[cs.GetId()] = cs.GetZone()
		if !cs.GetAlive() || cs.GetCopysets() != 10 {
			t.Errorf("chunkserver %d: alive %v, %d copysets; want alive, 10", cs.GetId(), cs.GetAlive(), cs.GetCopysets())
		}
	}
	for _, id := range []uint64{1, 2, 3} {
		checkCopysets(t, id, zoneOf, e.heartbeat(id, nil).GetCopysets())
	}
}

// checkCopysets checks that server id got 10 copysets, each with three
// members in three zones, one of them id, all with addresses.
func checkCopysets(t *testing.T, id uint64, zoneOf map[uint64]string, css []*mdspb.Copyset) {
	t.Helper()
	if len(css) != 10 {
		t.Fatalf("chunkserver %d hosts %d copysets, want 10", id, len(css))
	}
	for _, c := range css {
		zones, self := map[string]bool{}, false
		for _, m := range c.GetMembers() {
			zones[m.GetZone()] = true
			self = self || m.GetId() == id
			if m.GetAddress() == "" || m.GetZone() != zoneOf[m.GetId()] {
				t.Errorf("copyset %d: member %+v lacks its address or zone", c.GetId(), m)
			}
		}
		if len(c.GetMembers()) != 3 || len(zones) != 3 || !self {
			t.Errorf("copyset %d of chunkserver %d: members %v", c.GetId(), id, c.GetMembers())
		}
	}
}

// TestPoolWaitsForZones: three chunkservers in two zones are not enough;
// a fourth in a third zone creates the pool; a fifth arriving later gets
// no copysets.
func TestPoolWaitsForZones(t *testing.T) {
	e := newEnv(t)
	e.register("a")
	e.register("a")
	e.register("b")
	if n := e.status().GetCopysets(); n != 0 {
		t.Fatalf("pool created in two zones: %d copysets", n)
	}
	e.register("c")
	if n := e.status().GetCopysets(); n != 14 { // ceil(10*4/3)
		t.Fatalf("got %d copysets, want 14", n)
	}
	late := e.register("d")
	if css := e.heartbeat(late, nil).GetCopysets(); len(css) != 0 {
		t.Fatalf("late chunkserver got %d copysets", len(css))
	}
	if n := e.status().GetCopysets(); n != 14 {
		t.Fatalf("pool changed: %d copysets", n)
	}
}

// TestDeadServersDoNotCountForThePool: chunkservers whose heartbeats
// stopped do not make up the minimum.
func TestDeadServersDoNotCountForThePool(t *testing.T) {
	e := newEnv(t)
	e.register("a")
	e.register("b")
	e.clock.Advance(mds.DefaultHeartbeatTTL)
	e.register("c")
	if n := e.status().GetCopysets(); n != 0 {
		t.Fatalf("pool created with dead chunkservers: %d copysets", n)
	}
	e.heartbeat(1, nil)
	e.heartbeat(2, nil)
	if n := e.status().GetCopysets(); n != 10 {
		t.Fatalf("heartbeats did not create the pool: %d copysets", n)
	}
}

func TestRegisterErrors(t *testing.T) {
	e := newEnv(t)
	id := e.register("a")
	_, err := e.c.RegisterChunkserver(ctx(t), &mdspb.RegisterChunkserverRequest{Id: 99, Address: "x:1", Zone: "a"})
	wantErr(t, err, mds.ErrChunkserverNotFound, codes.NotFound)
	_, err = e.c.RegisterChunkserver(ctx(t), &mdspb.RegisterChunkserverRequest{Id: id, Address: "x:1", Zone: "b"})
	wantErr(t, err, mds.ErrInvalidArgument, codes.InvalidArgument)
	_, err = e.c.RegisterChunkserver(ctx(t), &mdspb.RegisterChunkserverRequest{Zone: "a"})
	wantErr(t, err, mds.ErrInvalidArgument, codes.InvalidArgument)
	_, err = e.c.Heartbeat(ctx(t), &mdspb.HeartbeatRequest{Id: 99})
	wantErr(t, err, mds.ErrChunkserverNotFound, codes.NotFound)
}

// TestReregisterKeepsID: a known chunkserver re-registering with its ID
// keeps it and updates its address and capacity.
func TestReregisterKeepsID(t *testing.T) {
	e := newEnv(t)
	id := e.register("a")
	resp := must(e.c.RegisterChunkserver(ctx(t), &mdspb.RegisterChunkserverRequest{
		Id: id, Address: "10.9.9.9:1", Zone: "a", Capacity: 5 << 40,
	}))(t)
	if resp.GetId() != id || resp.GetChunkSize() != chunkSize {
		t.Fatalf("got %+v, want id %d and chunk size %d", resp, id, chunkSize)
	}
	cs := e.status().GetChunkservers()
	if len(cs) != 1 || cs[0].GetAddress() != "10.9.9.9:1" || cs[0].GetCapacity() != 5<<40 {
		t.Fatalf("got %+v", cs)
	}
}

// TestClusterStatusHealth follows copyset health as heartbeats come and
// go: unavailable without a reported leader, healthy, degraded when a
// follower dies, unavailable when the leader dies, degraded again once a
// new leader reports a higher term.
func TestClusterStatusHealth(t *testing.T) {
	e := newEnv(t)
	ids := e.pool()
	all := e.copysetIDs()
	want := func(step string, healthy, degraded, unavailable uint32) {
		t.Helper()
		st := e.status()
		if st.GetCopysetsHealthy() != healthy || st.GetCopysetsDegraded() != degraded || st.GetCopysetsUnavailable() != unavailable {
			t.Fatalf("%s: healthy/degraded/unavailable = %d/%d/%d, want %d/%d/%d", step,
				st.GetCopysetsHealthy(), st.GetCopysetsDegraded(), st.GetCopysetsUnavailable(), healthy, degraded, unavailable)
		}
	}
	want("no leader yet", 0, 0, 10)
	e.heartbeat(ids[0], states(all, "StateLeader", 1, ids[0])) // etcd raft's spelling
	e.heartbeat(ids[1], states(all, "Follower", 1, ids[0]))
	e.heartbeat(ids[2], states(all, "Follower", 1, ids[0]))
	want("all up", 10, 0, 0)
	checkServer(t, e.status(), ids[0], true, 10)

	e.clock.Advance(mds.DefaultHeartbeatTTL / 2)
	e.heartbeat(ids[0], states(all, "Leader", 1, ids[0]))
	e.heartbeat(ids[1], states(all, "Follower", 1, ids[0]))
	e.clock.Advance(mds.DefaultHeartbeatTTL / 2)
	want("follower dead", 0, 10, 0)
	checkServer(t, e.status(), ids[2], false, 0)

	e.clock.Advance(mds.DefaultHeartbeatTTL / 2)
	e.heartbeat(ids[1], states(all, "Candidate", 2, 0))
	want("leader dead", 0, 0, 10)

	e.heartbeat(ids[0], states(all, "Leader", 1, ids[0])) // stale term: ignored
	e.heartbeat(ids[1], states(all, "Leader", 2, ids[1]))
	want("new leader", 0, 10, 0)
	checkServer(t, e.status(), ids[1], true, 10)
	checkServer(t, e.status(), ids[0], true, 0)
}

// checkServer checks one chunkserver's liveness and leader count.
func checkServer(t *testing.T, st *mdspb.ClusterStatusResponse, id uint64, alive bool, leaders uint32) {
	t.Helper()
	for _, cs := range st.GetChunkservers() {
		if cs.GetId() == id && (cs.GetAlive() != alive || cs.GetLeaders() != leaders || cs.GetLastHeartbeatUnixMs() == 0) {
			t.Fatalf("chunkserver %d: %+v; want alive %v, %d leaders", id, cs, alive, leaders)
		}
	}
}

func TestGetCopysets(t *testing.T) {
	e := newEnv(t)
	ids := e.pool()
	all := e.copysetIDs()
	if len(all) != 10 {
		t.Fatalf("got %d copysets", len(all))
	}
	e.heartbeat(ids[1], states(all[:1], "Leader", 3, ids[1]))
	got := must(e.c.GetCopysets(ctx(t), &mdspb.GetCopysetsRequest{Ids: []uint64{all[1], all[0]}}))(t).GetCopysets()
	if len(got) != 2 || got[0].GetId() != all[1] || got[1].GetId() != all[0] {
		t.Fatalf("got %v", got)
	}
	if got[0].GetLeader() != 0 || got[1].GetLeader() != ids[1] || len(got[1].GetMembers()) != 3 {
		t.Fatalf("leaders: got %v", got)
	}
	_, err := e.c.GetCopysets(ctx(t), &mdspb.GetCopysetsRequest{Ids: []uint64{999}})
	wantErr(t, err, mds.ErrCopysetNotFound, codes.NotFound)
}

// TestHeartbeatIgnoresStrangers: reports about copysets a chunkserver is
// not a member of, or that do not exist, change nothing, and give it no
// deletions.
func TestHeartbeatIgnoresStrangers(t *testing.T) {
	e := newEnv(t)
	ids := e.pool()
	stranger := e.register("d") // registered after the pool: member of nothing
	all := e.copysetIDs()
	e.fillAndDelete("v", 1)
	resp := e.heartbeat(stranger, append(states(all, "Leader", 5, stranger), &mdspb.CopysetState{Id: 999, Role: "Leader", Term: 9}))
	if len(resp.GetCopysets()) != 0 || len(resp.GetDeleteChunks()) != 0 {
		t.Fatalf("stranger got %v", resp)
	}
	if st := e.status(); st.GetCopysetsUnavailable() != 10 {
		t.Fatalf("a stranger's report made copysets available: %+v", st)
	}
	e.heartbeat(ids[0], states(all, "Leader", 1, ids[0]))
	if st := e.status(); st.GetCopysetsHealthy() != 10 {
		t.Fatalf("after the real leader reported: %+v", st)
	}
}

// TestStatusReportsHeartbeatFigures: capacity, used and the heartbeat time
// come from the last heartbeat.
func TestStatusReportsHeartbeatFigures(t *testing.T) {
	e := newEnv(t)
	id := e.register("a")
	e.clock.Advance(3 * time.Second)
	must(e.c.Heartbeat(ctx(t), &mdspb.HeartbeatRequest{Id: id, Capacity: 1000 << 30, Used: 7 << 30}))(t)
	cs := e.status().GetChunkservers()[0]
	if cs.GetCapacity() != 1000<<30 || cs.GetUsed() != 7<<30 || cs.GetLastHeartbeatUnixMs() != e.clock.Now().UnixMilli() {
		t.Fatalf("got %+v", cs)
	}
}

// TestDeletionsComeInBatches: a heartbeat carries at most 4096 deletions;
// the rest come once those are acknowledged.
func TestDeletionsComeInBatches(t *testing.T) {
	e := newEnv(t, func(c *mds.Config) { c.ChunkSize = 4096 }) // 256 chunks a segment
	ids := e.pool()
	all := e.copysetIDs()
	chunks := e.fillAndDelete("v", 20) // 5120 chunks
	leader := states(all, "Leader", 1, ids[0])
	first := e.heartbeat(ids[0], leader).GetDeleteChunks()
	if len(first) != 4096 {
		t.Fatalf("first batch: %d deletions, want 4096", len(first))
	}
	second := e.heartbeat(ids[0], leader, first...).GetDeleteChunks()
	if len(second) != len(chunks)-4096 {
		t.Fatalf("second batch: %d deletions, want %d", len(second), len(chunks)-4096)
	}
	if rest := e.heartbeat(ids[0], leader, second...).GetDeleteChunks(); len(rest) != 0 {
		t.Fatalf("%d deletions left", len(rest))
	}
}
