package placement_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"basalt/mds/placement"
)

const tib = 1 << 40

// topology returns alive, empty 1 TiB chunkservers, sizes[i] of them in
// zone "z<i>", with IDs 1, 2, ... zone by zone.
func topology(sizes ...int) []placement.Chunkserver {
	var out []placement.Chunkserver
	for z, n := range sizes {
		for range n {
			out = append(out, placement.Chunkserver{
				ID: uint64(len(out) + 1), Zone: fmt.Sprintf("z%d", z), Capacity: tib, Alive: true,
			})
		}
	}
	return out
}

// newRNG returns a generator seeded with seed and logs the seed, so a
// failure can be replayed.
func newRNG(t testing.TB, seed uint64) *rand.Rand {
	t.Helper()
	t.Logf("seed %d", seed)
	return newRNGQuiet(seed)
}

// byID indexes servers by ID.
func byID(servers []placement.Chunkserver) map[uint64]placement.Chunkserver {
	m := make(map[uint64]placement.Chunkserver, len(servers))
	for _, s := range servers {
		m[s.ID] = s
	}
	return m
}

// usable mirrors the package's notion of a server that may take replicas.
func usable(s placement.Chunkserver, maxUsed float64) bool {
	return s.Alive && s.Capacity > 0 && float64(s.Used) <= maxUsed*float64(s.Capacity)
}

// checkCopyset reports a copyset whose members are not distinct usable
// servers in distinct zones, or whose size is not replicas.
func checkCopyset(t *testing.T, c placement.Copyset, servers map[uint64]placement.Chunkserver, cfg placement.Config) {
	t.Helper()
	if len(c.Members) != cfg.Replicas {
		t.Errorf("copyset %d has %d members %v, want %d", c.ID, len(c.Members), c.Members, cfg.Replicas)
	}
	ids, zones := map[uint64]bool{}, map[string]bool{}
	for _, m := range c.Members {
		s, ok := servers[m]
		switch {
		case !ok:
			t.Errorf("copyset %d: member %d is not a known server", c.ID, m)
		case ids[m]:
			t.Errorf("copyset %d: member %d appears twice in %v", c.ID, m, c.Members)
		case zones[s.Zone]:
			t.Errorf("copyset %d: zone %q used twice in %v", c.ID, s.Zone, c.Members)
		case !usable(s, cfg.MaxUsedFraction):
			t.Errorf("copyset %d: member %d is dead or full: %+v", c.ID, m, s)
		}
		ids[m], zones[s.Zone] = true, true
	}
}

// loads counts the copysets on each server.
func loads(copysets []placement.Copyset) map[uint64]int {
	m := make(map[uint64]int)
	for _, c := range copysets {
		for _, s := range c.Members {
			m[s]++
		}
	}
	return m
}

// peers returns, for each server, the set of servers it shares a copyset
// with and how many copysets it shares with each.
func peers(copysets []placement.Copyset) map[uint64]map[uint64]int {
	m := make(map[uint64]map[uint64]int)
	for _, c := range copysets {
		for _, a := range c.Members {
			for _, b := range c.Members {
				if a == b {
					continue
				}
				if m[a] == nil {
					m[a] = make(map[uint64]int)
				}
				m[a][b]++
			}
		}
	}
	return m
}

// newRNGQuiet is newRNG for loops over many seeds, where the caller
// reports the seed of a failure itself.
func newRNGQuiet(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}
