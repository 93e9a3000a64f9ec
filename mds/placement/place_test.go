package placement_test

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"basalt/mds/placement"
)

// picks calls Place n times with seeds 0..n-1 and counts the picks.
func picks(t *testing.T, cfg placement.Config, servers []placement.Chunkserver, existing []placement.Copyset, exclude []uint64, n int) map[uint64]int {
	t.Helper()
	got := make(map[uint64]int)
	for seed := range uint64(n) {
		id, err := placement.Place(cfg, servers, existing, exclude, newRNGQuiet(seed))
		if err != nil {
			t.Fatalf("Place (seed %d): %v", seed, err)
		}
		got[id]++
	}
	return got
}

// TestPlaceFilters checks that Place only returns alive, non-full servers
// outside the staying members and their zones. BestFew is large, so any
// candidate may be picked.
func TestPlaceFilters(t *testing.T) {
	// Zones z0..z3, servers 1-3, 4-6, 7-9, 10-12; members 1 (z0), 4 (z1).
	tests := []struct {
		name   string
		modify func([]placement.Chunkserver)
		want   []uint64
	}{
		{"all usable", func([]placement.Chunkserver) {}, []uint64{7, 8, 9, 10, 11, 12}},
		{"dead skipped", func(s []placement.Chunkserver) { s[6].Alive, s[11].Alive = false, false }, []uint64{8, 9, 10, 11}},
		{"full skipped", func(s []placement.Chunkserver) { s[7].Used, s[9].Capacity = s[7].Capacity, 0 }, []uint64{7, 9, 11, 12}},
		{"only one left", func(s []placement.Chunkserver) {
			for i := 6; i < 12; i++ {
				s[i].Alive = i == 10
			}
		}, []uint64{11}},
	}
	cfg := placement.Config{BestFew: 100}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := topology(3, 3, 3, 3)
			tt.modify(servers)
			got := picks(t, cfg, servers, nil, []uint64{1, 4}, 300)
			if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, tt.want) {
				t.Errorf("picked %v, want exactly %v", ids, tt.want)
			}
		})
	}
}

// TestPlaceReplacesDeadMember is the re-replication case: a copyset lost
// its z0 member, the replacement comes from z0, the only zone left.
func TestPlaceReplacesDeadMember(t *testing.T) {
	servers := topology(3, 3, 3)
	servers[0].Alive = false
	got := picks(t, placement.DefaultConfig(), servers, nil, []uint64{4, 7}, 100)
	if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, []uint64{2, 3}) {
		t.Errorf("picked %v, want the alive servers of z0, [2 3]", ids)
	}
}

// TestPlaceRanking checks the order with BestFew 1: free bytes first, then
// copyset count, then copysets shared with the members, then ID.
func TestPlaceRanking(t *testing.T) {
	// Members 1 (z0) and 2 (z1); candidates 3..6 in z2.
	existing := []placement.Copyset{{ID: 1, Members: []uint64{1, 2, 3}}, {ID: 2, Members: []uint64{1, 4, 5}}}
	tests := []struct {
		name   string
		modify func([]placement.Chunkserver)
		want   uint64
	}{
		{"most free", func(s []placement.Chunkserver) { s[2].Used, s[3].Used, s[5].Used = 10, 10, 10 }, 5},
		{"free beats copysets", func(s []placement.Chunkserver) {
			s[2].Used, s[4].Used, s[5].Used, s[3].Copysets = 1, 1, 1, 50
		}, 4},
		{"fewest copysets", func(s []placement.Chunkserver) { s[2].Copysets, s[3].Copysets, s[4].Copysets = 3, 2, 2 }, 6},
		{"fewest shared with members", func([]placement.Chunkserver) {}, 6},
		{"lowest ID", func(s []placement.Chunkserver) { s[5].Copysets = 1 }, 4},
	}
	cfg := placement.Config{BestFew: 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := topology(1, 1, 4)
			tt.modify(servers)
			got := picks(t, cfg, servers, existing, []uint64{1, 2}, 20)
			if len(got) != 1 || got[tt.want] == 0 {
				t.Errorf("picked %v, want only %d", got, tt.want)
			}
		})
	}
}

// TestPlaceBestFew checks that Place spreads its picks over the best
// BestFew candidates and never goes beyond them.
func TestPlaceBestFew(t *testing.T) {
	tests := []struct {
		name    string
		used    []uint64 // Used of servers 3.., in zone z2
		bestFew int
		want    []uint64
	}{
		{"ties", []uint64{0, 0, 0, 0, 0, 0}, 3, []uint64{3, 4, 5}},
		{"ranked", []uint64{5, 1, 4, 2, 3, 0}, 3, []uint64{4, 6, 8}},
		{"fewer candidates than BestFew", []uint64{0, 0}, 3, []uint64{3, 4}},
		{"BestFew 2", []uint64{9, 0, 9, 0, 9}, 2, []uint64{4, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := topology(1, 1, len(tt.used))
			for i, u := range tt.used {
				servers[2+i].Used = u
			}
			cfg := placement.Config{BestFew: tt.bestFew}
			got := picks(t, cfg, servers, nil, []uint64{1, 2}, 300)
			ids := slices.Sorted(maps.Keys(got))
			if len(ids) < 2 {
				t.Errorf("300 calls picked only %v", ids)
			}
			for _, id := range ids {
				if !slices.Contains(tt.want, id) {
					t.Errorf("picked %d (%d times), outside the best %v", id, got[id], tt.want)
				}
			}
		})
	}
}

// TestPlaceRebuildSpreads re-replicates every copyset of a dead server,
// feeding each choice back into the copyset counts as the MDS would, and
// checks that the lost replicas land on many servers.
func TestPlaceRebuildSpreads(t *testing.T) {
	servers := topology(4, 4, 4, 4)
	existing := planValid(t, placement.DefaultConfig(), servers, 3)
	for i, s := range servers {
		servers[i].Copysets = loads(existing)[s.ID]
	}
	servers[0].Alive = false
	index := map[uint64]int{}
	for i, s := range servers {
		index[s.ID] = i
	}
	targets := map[uint64]int{}
	for _, c := range existing {
		if !slices.Contains(c.Members, 1) {
			continue
		}
		staying := slices.DeleteFunc(slices.Clone(c.Members), func(m uint64) bool { return m == 1 })
		id, err := placement.Place(placement.DefaultConfig(), servers, existing, staying, newRNGQuiet(c.ID))
		if err != nil {
			t.Fatalf("copyset %d: %v", c.ID, err)
		}
		checkCopyset(t, placement.Copyset{ID: c.ID, Members: append(staying, id)}, byID(servers), placement.DefaultConfig())
		targets[id]++
		servers[index[id]].Copysets++
	}
	if len(targets) < 8 {
		t.Errorf("the dead server's copysets went to only %d servers: %v", len(targets), targets)
	}
	var counts []int
	for _, s := range servers[1:] {
		counts = append(counts, s.Copysets)
	}
	if lo, hi := slices.Min(counts), slices.Max(counts); hi-lo > 3 {
		t.Errorf("after the rebuild, copysets per server range over [%d, %d]", lo, hi)
	}
}

func TestPlaceErrors(t *testing.T) {
	allDead := topology(1, 1, 3)
	for i := 2; i < 5; i++ {
		allDead[i].Alive = false
	}
	allFull := topology(1, 1, 3)
	for i := 2; i < 5; i++ {
		allFull[i].Used = allFull[i].Capacity
	}
	tests := []struct {
		name    string
		cfg     placement.Config
		servers []placement.Chunkserver
		exclude []uint64
		want    error
	}{
		{"all candidates dead", placement.DefaultConfig(), allDead, []uint64{1, 2}, placement.ErrNoCandidate},
		{"all candidates full", placement.DefaultConfig(), allFull, []uint64{1, 2}, placement.ErrNoCandidate},
		{"every zone used", placement.DefaultConfig(), topology(2, 2, 2), []uint64{1, 3, 5}, placement.ErrNoCandidate},
		{"no servers", placement.DefaultConfig(), nil, nil, placement.ErrNoCandidate},
		{"duplicate ID", placement.DefaultConfig(), append(topology(1, 1, 1), topology(1)...), []uint64{2, 3}, placement.ErrDuplicateServer},
		{"bad config", placement.Config{MaxUsedFraction: 2}, topology(1, 1, 1), []uint64{1, 2}, placement.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := placement.Place(tt.cfg, tt.servers, nil, tt.exclude, newRNG(t, 1))
			if !errors.Is(err, tt.want) || id != 0 {
				t.Errorf("Place = %d, %v; want 0, %v", id, err, tt.want)
			}
		})
	}
}

func TestPlaceNilRNG(t *testing.T) {
	if _, err := placement.Place(placement.DefaultConfig(), topology(1, 1, 1), nil, []uint64{1, 2}, nil); !errors.Is(err, placement.ErrInvalidConfig) {
		t.Errorf("Place with nil rng: %v, want ErrInvalidConfig", err)
	}
}
