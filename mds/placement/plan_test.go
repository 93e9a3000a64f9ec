package placement_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"basalt/mds/placement"
)

// TestPlanPoolBalanced lays out pools over topologies whose zones are small
// enough (at most 1/Replicas of the servers each) for every server to reach
// the mean, and checks every copyset, the count, the balance and the
// scatter width.
func TestPlanPoolBalanced(t *testing.T) {
	tests := []struct {
		name     string
		sizes    []int
		perSrv   int
		replicas int
	}{
		{"3x1", []int{1, 1, 1}, 100, 3},
		{"3x2", []int{2, 2, 2}, 100, 3},
		{"3x3", []int{3, 3, 3}, 100, 3},
		{"3x4", []int{4, 4, 4}, 100, 3},
		{"3x4 few copysets", []int{4, 4, 4}, 20, 3},
		{"3x10", []int{10, 10, 10}, 20, 3},
		{"3x2 count rounded up", []int{2, 2, 2}, 7, 3},
		{"4 uneven zones", []int{4, 3, 3, 2}, 100, 3},
		{"5 uneven zones", []int{3, 3, 2, 2, 1}, 100, 3},
		{"5 larger uneven zones", []int{5, 4, 3, 3, 2}, 100, 3},
		{"5 uneven zones few copysets", []int{5, 4, 3, 3, 2}, 20, 3},
		{"2 replicas over 4 zones", []int{3, 3, 2, 4}, 50, 2},
		{"5 replicas over 6 zones", []int{2, 2, 2, 2, 2, 1}, 100, 5},
	}
	for _, tt := range tests {
		for seed := range uint64(5) {
			t.Run(fmt.Sprintf("%s/seed=%d", tt.name, seed), func(t *testing.T) {
				cfg := placement.Config{Replicas: tt.replicas, CopysetsPerServer: tt.perSrv}
				servers := topology(tt.sizes...)
				copysets := planValid(t, cfg, servers, seed)
				checkBalance(t, servers, copysets, 2)
				if slices.Min(tt.sizes) >= 3 {
					checkScatter(t, servers, copysets, tt.replicas)
				}
			})
		}
	}
}

// planValid runs PlanPool and checks the count, the IDs and every copyset.
func planValid(t *testing.T, cfg placement.Config, servers []placement.Chunkserver, seed uint64) []placement.Copyset {
	t.Helper()
	copysets, err := placement.PlanPool(cfg, servers, newRNG(t, seed))
	if err != nil {
		t.Fatalf("PlanPool: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range servers {
		if usable(s, cfg.MaxUsedFraction) {
			n++
		}
	}
	if want := (cfg.CopysetsPerServer*n + cfg.Replicas - 1) / cfg.Replicas; len(copysets) != want {
		t.Errorf("got %d copysets, want %d", len(copysets), want)
	}
	for i, c := range copysets {
		if c.ID != uint64(i+1) {
			t.Errorf("copyset %d has ID %d, want %d", i, c.ID, i+1)
		}
		checkCopyset(t, c, byID(servers), cfg)
	}
	return copysets
}

// checkBalance checks that the usable servers' copyset counts are within
// spread of each other.
func checkBalance(t *testing.T, servers []placement.Chunkserver, copysets []placement.Copyset, spread int) {
	t.Helper()
	l := loads(copysets)
	var counts []int
	for _, s := range servers {
		if usable(s, placement.DefaultConfig().MaxUsedFraction) {
			counts = append(counts, l[s.ID])
		}
	}
	if lo, hi := slices.Min(counts), slices.Max(counts); hi-lo > spread {
		t.Errorf("copysets per server range over [%d, %d], more than %d apart: %v", lo, hi, spread, l)
	}
}

// checkScatter checks that each server's copysets touch at least half of the
// servers in other zones, and that no pair of servers shares more than
// twice its fair share of copysets (rounded up).
func checkScatter(t *testing.T, servers []placement.Chunkserver, copysets []placement.Copyset, replicas int) {
	t.Helper()
	l, p := loads(copysets), peers(copysets)
	for _, s := range servers {
		others := 0
		for _, o := range servers {
			if o.Zone != s.Zone {
				others++
			}
		}
		if len(p[s.ID]) < (others+1)/2 {
			t.Errorf("server %d shares copysets with %d servers, want at least half of %d", s.ID, len(p[s.ID]), others)
		}
		fair := (l[s.ID]*(replicas-1) + others - 1) / others
		for peer, n := range p[s.ID] {
			if n > 2*fair {
				t.Errorf("servers %d and %d share %d copysets, more than twice the fair %d", s.ID, peer, n, fair)
			}
		}
	}
}

// TestPlanPoolOversizedZone covers zones holding more than 1/Replicas of
// the servers: every copyset has a member in each of the small zones, and
// the servers of each zone stay within one copyset of each other.
func TestPlanPoolOversizedZone(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
	}{
		{"4+1+1", []int{4, 1, 1}},
		{"6+2+1+1", []int{6, 2, 1, 1}},
		{"5+5+1", []int{5, 5, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := topology(tt.sizes...)
			copysets := planValid(t, placement.DefaultConfig(), servers, 1)
			l := loads(copysets)
			zoneCounts := map[string][]int{}
			for _, s := range servers {
				zoneCounts[s.Zone] = append(zoneCounts[s.Zone], l[s.ID])
			}
			for zone, counts := range zoneCounts {
				if slices.Max(counts)-slices.Min(counts) > 1 {
					t.Errorf("zone %s: copysets per server %v differ by more than one", zone, counts)
				}
			}
		})
	}
}

// TestPlanPoolSkipsUnusable checks that dead, full and zero-capacity
// servers get no copyset and are not counted. The usable servers are 3, 2,
// 3 and 4 in four zones, so they can be balanced.
func TestPlanPoolSkipsUnusable(t *testing.T) {
	servers := topology(4, 4, 4, 4)
	servers[0].Alive = false
	servers[5].Used = servers[5].Capacity/100*96 + 1
	servers[6].Used = servers[6].Capacity + 1
	servers[9].Capacity = 0
	servers[10].Used = servers[10].Capacity / 100 * 95 // at the limit: usable
	copysets := planValid(t, placement.DefaultConfig(), servers, 7)
	checkBalance(t, servers, copysets, 2)
	l := loads(copysets)
	for _, i := range []int{0, 5, 6, 9} {
		if l[servers[i].ID] != 0 {
			t.Errorf("unusable server %+v got %d copysets", servers[i], l[servers[i].ID])
		}
	}
	if l[servers[10].ID] == 0 {
		t.Errorf("server at exactly MaxUsedFraction got no copyset")
	}
}

func TestPlanPoolErrors(t *testing.T) {
	deadZone := topology(3, 3, 3)
	for i := 6; i < 9; i++ {
		deadZone[i].Alive = false
	}
	fullZone := topology(3, 3, 3)
	for i := range 3 {
		fullZone[i].Used = fullZone[i].Capacity
	}
	tests := []struct {
		name    string
		cfg     placement.Config
		servers []placement.Chunkserver
		want    error
	}{
		{"two zones", placement.DefaultConfig(), topology(3, 3), placement.ErrNotEnoughZones},
		{"no servers", placement.DefaultConfig(), nil, placement.ErrNotEnoughZones},
		{"one zone all dead", placement.DefaultConfig(), deadZone, placement.ErrNotEnoughZones},
		{"one zone all full", placement.DefaultConfig(), fullZone, placement.ErrNotEnoughZones},
		{"more replicas than zones", placement.Config{Replicas: 4}, topology(2, 2, 2), placement.ErrNotEnoughZones},
		{"duplicate ID", placement.DefaultConfig(), append(topology(1, 1, 1), topology(1)...), placement.ErrDuplicateServer},
		{"bad config", placement.Config{BestFew: -1}, topology(1, 1, 1), placement.ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := placement.PlanPool(tt.cfg, tt.servers, newRNG(t, 1))
			if !errors.Is(err, tt.want) || got != nil {
				t.Errorf("PlanPool = %v, %v; want nil, %v", got, err, tt.want)
			}
		})
	}
}

func TestPlanPoolNilRNG(t *testing.T) {
	if _, err := placement.PlanPool(placement.DefaultConfig(), topology(1, 1, 1), nil); !errors.Is(err, placement.ErrInvalidConfig) {
		t.Errorf("PlanPool with nil rng: %v, want ErrInvalidConfig", err)
	}
}

// TestNotEnoughZonesMessage checks that the error says how many zones are
// usable and how many are needed: an operator reads it.
func TestNotEnoughZonesMessage(t *testing.T) {
	_, err := placement.PlanPool(placement.DefaultConfig(), topology(2, 2), newRNG(t, 1))
	for _, want := range []string{"2 zones", "3 needed"} {
		//basalt:allow errstring this test checks the message an operator reads
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestPlanPoolDeterministic checks that a seed fixes the layout and that
// the input is not modified.
func TestPlanPoolDeterministic(t *testing.T) {
	servers := topology(4, 3, 3, 2)
	before := slices.Clone(servers)
	a := planValid(t, placement.DefaultConfig(), servers, 42)
	b := planValid(t, placement.DefaultConfig(), servers, 42)
	if !slices.EqualFunc(a, b, equalCopyset) {
		t.Errorf("two plans with seed 42 differ")
	}
	if !slices.Equal(servers, before) {
		t.Errorf("PlanPool modified its input")
	}
	if c := planValid(t, placement.DefaultConfig(), servers, 43); slices.EqualFunc(a, c, equalCopyset) {
		t.Errorf("plans with seeds 42 and 43 are identical")
	}
}

func equalCopyset(a, b placement.Copyset) bool {
	return a.ID == b.ID && slices.Equal(a.Members, b.Members)
}
