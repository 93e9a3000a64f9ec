package placement

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
)

// PlanPool lays out the copysets of a new pool over the usable (alive and
// not full) servers: ceil(CopysetsPerServer*n/Replicas) copysets for n
// usable servers, with IDs 1, 2, ..., each on Replicas usable servers in
// Replicas distinct zones. Servers' Copysets fields are ignored.
//
// The layout is balanced. The member slots (copysets times Replicas) are
// first split over the zones in proportion to their usable servers, except
// that no zone can take more than one slot per copyset; copysets are then
// built one at a time, each taking the Replicas zones furthest below their
// share, so that every zone ends exactly at its share. Within a zone the
// member is the server with the fewest copysets so far, ties going to the
// server that shares the fewest copysets with the members already chosen
// (which spreads each server's copysets over many peers), then to chance;
// the zone with the fewest such ties chooses first. When no zone holds
// more than 1/Replicas of the usable servers, every server ends within two
// copysets of every other (in practice within one). A zone holding more
// than that cannot reach the mean: its servers get fewer copysets, within
// one of each other.
//
// It fails with ErrNotEnoughZones when fewer than Replicas zones have a
// usable server, ErrDuplicateServer when an ID repeats, and
// ErrInvalidConfig for a bad cfg or a nil rng.
func PlanPool(cfg Config, servers []Chunkserver, rng *rand.Rand) ([]Copyset, error) {
	if err := checkInputs(&cfg, servers, rng); err != nil {
		return nil, err
	}
	p := newPlanner(cfg, servers, rng)
	if len(p.zones) < cfg.Replicas {
		return nil, fmt.Errorf("%w: %d zones have an alive, non-full chunkserver, %d needed",
			ErrNotEnoughZones, len(p.zones), cfg.Replicas)
	}
	return p.plan(), nil
}

// planner is the state of one PlanPool call. Servers are referred to by
// their index in ids.
type planner struct {
	cfg   Config
	rng   *rand.Rand
	ids   []uint64
	load  []int          // copysets planned per server
	zones []*zoneState   // zones with a usable server, in input order
	pairs map[uint64]int // copysets shared by two servers, by pairKey
}

// zoneState tracks one zone during planning.
type zoneState struct {
	servers []int // usable servers of the zone
	target  int   // member slots the zone should end with
	load    int   // member slots planned so far
}

func (z *zoneState) deficit() int { return z.target - z.load }

// newPlanner indexes the usable servers by zone.
func newPlanner(cfg Config, servers []Chunkserver, rng *rand.Rand) *planner {
	p := &planner{cfg: cfg, rng: rng, pairs: make(map[uint64]int)}
	byName := make(map[string]*zoneState)
	for _, s := range servers {
		if !usable(s, cfg) {
			continue
		}
		z := byName[s.Zone]
		if z == nil {
			z = &zoneState{}
			byName[s.Zone] = z
			p.zones = append(p.zones, z)
		}
		z.servers = append(z.servers, len(p.ids))
		p.ids = append(p.ids, s.ID)
	}
	p.load = make([]int, len(p.ids))
	return p
}

// plan builds all the copysets of the pool.
func (p *planner) plan() []Copyset {
	count := ceilDiv(p.cfg.CopysetsPerServer*len(p.ids), p.cfg.Replicas)
	p.setTargets(count)
	out := make([]Copyset, count)
	for i := range out {
		out[i] = Copyset{ID: uint64(i + 1), Members: p.next()}
	}
	return out
}

// setTargets gives each zone its share of the count*Replicas member slots.
func (p *planner) setTargets(count int) {
	sizes := make([]int, len(p.zones))
	for i, z := range p.zones {
		sizes[i] = len(z.servers)
	}
	for i, t := range zoneTargets(sizes, count, p.cfg.Replicas) {
		p.zones[i].target = t
	}
}

// next places one copyset and returns its members.
func (p *planner) next() []uint64 {
	chosen := make([]int, 0, p.cfg.Replicas)
	for _, z := range p.pickZones() {
		chosen = append(chosen, p.pickServer(z, chosen))
		z.load++
	}
	p.record(chosen)
	members := make([]uint64, len(chosen))
	for i, s := range chosen {
		members[i] = p.ids[s]
	}
	return members
}

// pickZones returns the Replicas zones furthest below their target, ties
// broken at random. Because every target is at most the number of
// copysets and the targets add up to Replicas per copyset, taking the
// largest deficits each time leaves every zone exactly at its target. The
// zones are returned most constrained first (fewest least-loaded servers),
// so that the zones with more freedom fit their choice around it.
func (p *planner) pickZones() []*zoneState {
	zs := make([]*zoneState, len(p.zones))
	for i, j := range p.rng.Perm(len(zs)) {
		zs[i] = p.zones[j]
	}
	slices.SortStableFunc(zs, func(a, b *zoneState) int {
		return cmp.Compare(b.deficit(), a.deficit())
	})
	zs = zs[:p.cfg.Replicas]
	slices.SortStableFunc(zs, func(a, b *zoneState) int {
		return cmp.Compare(p.choices(a), p.choices(b))
	})
	return zs
}

// choices returns how many servers of z have the fewest copysets.
func (p *planner) choices(z *zoneState) int {
	least, n := 0, 0
	for i, s := range z.servers {
		switch {
		case i == 0 || p.load[s] < least:
			least, n = p.load[s], 1
		case p.load[s] == least:
			n++
		}
	}
	return n
}

// pickServer returns the server of z with the fewest copysets, then the
// fewest shared with chosen, ties broken uniformly at random (reservoir
// sampling over the tied servers).
func (p *planner) pickServer(z *zoneState, chosen []int) int {
	best, bestShared, ties := -1, 0, 0
	for _, s := range z.servers {
		if best >= 0 && p.load[s] > p.load[best] {
			continue
		}
		shared := p.shared(s, chosen)
		switch {
		case best < 0 || p.load[s] < p.load[best] || shared < bestShared:
			best, bestShared, ties = s, shared, 1
		case shared == bestShared:
			if ties++; p.rng.IntN(ties) == 0 {
				best = s
			}
		}
	}
	return best
}

// shared returns how many copysets s shares with the servers in chosen,
// counted once per server.
func (p *planner) shared(s int, chosen []int) int {
	n := 0
	for _, c := range chosen {
		n += p.pairs[pairKey(s, c)]
	}
	return n
}

// record counts a new copyset with the given members.
func (p *planner) record(members []int) {
	for i, s := range members {
		p.load[s]++
		for _, t := range members[i+1:] {
			p.pairs[pairKey(s, t)]++
		}
	}
}

// pairKey identifies an unordered pair of servers.
func pairKey(a, b int) uint64 {
	if a > b {
		a, b = b, a
	}
	return uint64(a)<<32 | uint64(b)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }
