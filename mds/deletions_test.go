package mds_test

import (
	"maps"
	"slices"
	"testing"

	"basalt/mds/mdspb"
)

// fillAndDelete writes segments segs of a new volume and deletes it,
// returning its chunks and their copysets.
func (e *env) fillAndDelete(name string, segs uint64) map[uint64]uint64 {
	e.t.Helper()
	e.createVolume(name, segs*segmentSize)
	s := e.openWriter(name, "w")
	chunks := map[uint64]uint64{}
	for i := range segs {
		for _, c := range must(e.segment(name, i, true, s))(e.t).GetChunks() {
			chunks[c.GetChunk()] = c.GetCopyset()
		}
	}
	noErr(e.t, e.closeVolume(name, s))
	must(e.c.DeleteVolume(ctx(e.t), &mdspb.DeleteVolumeRequest{Name: name}))(e.t)
	return chunks
}

// deletions returns the deletions of a heartbeat response, checking that
// its two lists have the same length.
func deletions(t *testing.T, resp *mdspb.HeartbeatResponse) map[uint64]uint64 {
	t.Helper()
	if len(resp.GetDeleteChunks()) != len(resp.GetDeleteChunkCopysets()) {
		t.Fatalf("%d chunks but %d copysets", len(resp.GetDeleteChunks()), len(resp.GetDeleteChunkCopysets()))
	}
	out := map[uint64]uint64{}
	for i, c := range resp.GetDeleteChunks() {
		out[c] = resp.GetDeleteChunkCopysets()[i]
	}
	return out
}

// TestDeletedChunksGoToLeaders: the chunks of a deleted volume are handed
// to the chunkserver that reports leading their copyset, and only to it,
// until it acknowledges them.
func TestDeletedChunksGoToLeaders(t *testing.T) {
	e := newEnv(t)
	ids := e.pool()
	all := e.copysetIDs()
	chunks := e.fillAndDelete("v", 2)
	if len(chunks) != 2*perSegment {
		t.Fatalf("%d chunks", len(chunks))
	}
	if got := deletions(t, e.heartbeat(ids[1], states(all, "Follower", 1, ids[0]))); len(got) != 0 {
		t.Fatalf("a follower got deletions %v", got)
	}
	got := deletions(t, e.heartbeat(ids[0], states(all, "Leader", 1, ids[0])))
	if !maps.Equal(got, chunks) {
		t.Fatalf("leader got %v, want %v", got, chunks)
	}
	keys := slices.Sorted(maps.Keys(chunks))
	acked, rest := keys[:5], keys[5:]
	got = deletions(t, e.heartbeat(ids[0], states(all, "Leader", 1, ids[0]), acked...))
	if len(got) != len(rest) || got[rest[0]] != chunks[rest[0]] {
		t.Fatalf("after acking %v: got %v", acked, got)
	}
	e.restart()
	got = deletions(t, e.heartbeat(ids[0], states(all, "Leader", 1, ids[0]), rest...))
	if len(got) != 0 {
		t.Fatalf("after acking everything: %v", got)
	}
}

// TestDeletionsFollowLeadership: with leadership split between two
// chunkservers, each gets the deletions of the copysets it leads.
func TestDeletionsFollowLeadership(t *testing.T) {
	e := newEnv(t)
	ids := e.pool()
	all := e.copysetIDs()
	chunks := e.fillAndDelete("v", 3)
	led := map[uint64]uint64{} // copyset -> leader
	for i, id := range all {
		led[id] = ids[i%2]
	}
	union := map[uint64]uint64{}
	for _, id := range ids[:2] {
		var mine []uint64
		for _, c := range all {
			if led[c] == id {
				mine = append(mine, c)
			}
		}
		for chunk, cp := range deletions(t, e.heartbeat(id, states(mine, "Leader", 1, id))) {
			if led[cp] != id || chunks[chunk] != cp {
				t.Fatalf("chunkserver %d got chunk %d of copyset %d led by %d", id, chunk, cp, led[cp])
			}
			union[chunk] = cp
		}
	}
	if !maps.Equal(union, chunks) {
		t.Fatalf("deletions handed out %v, want %v", union, chunks)
	}
}
