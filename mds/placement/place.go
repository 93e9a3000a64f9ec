package placement

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
)

// Place picks one chunkserver to add to a copyset, typically to replace a
// replica lost with a dead server.
//
// exclude lists the members that stay in the copyset. Candidates are the
// servers that are alive, not full, not in exclude, and in a zone that no
// server in exclude is in (an excluded ID missing from servers rules out no
// zone). Leave the member being replaced out of exclude, or its zone is
// ruled out too; a dead server is never picked anyway.
//
// Candidates are ranked by free bytes (most first), then by Copysets
// (fewest first), then by how many of existing they share with the servers
// in exclude (fewest first, to widen scatter; existing may be nil), then by
// ID; Place returns one of the first Config.BestFew at random, so that
// allocators deciding concurrently on the same view rarely pick the same
// server.
//
// It fails with ErrNoCandidate, saying how many servers each filter
// removed, when no server qualifies; ErrDuplicateServer when an ID repeats;
// ErrInvalidConfig for a bad cfg or a nil rng.
func Place(cfg Config, servers []Chunkserver, existing []Copyset, exclude []uint64, rng *rand.Rand) (uint64, error) {
	if err := checkInputs(&cfg, servers, rng); err != nil {
		return 0, err
	}
	cands, stats := candidates(cfg, servers, exclude)
	if len(cands) == 0 {
		return 0, fmt.Errorf("%w: %v", ErrNoCandidate, stats)
	}
	rank(cands, sharedCounts(existing, exclude))
	best := cands[:min(cfg.BestFew, len(cands))]
	return best[rng.IntN(len(best))].ID, nil
}

// filterStats counts the servers each of Place's filters removed.
type filterStats struct {
	total, excluded, dead, full, sameZone int
}

func (f filterStats) String() string {
	return fmt.Sprintf("all %d chunkservers filtered out: %d staying members, %d dead, %d full, %d in a member's zone",
		f.total, f.excluded, f.dead, f.full, f.sameZone)
}

// candidates returns the servers that pass Place's filters, cheapest
// filter first, and how many each filter removed.
func candidates(cfg Config, servers []Chunkserver, exclude []uint64) ([]Chunkserver, filterStats) {
	zones := memberZones(servers, exclude)
	stats := filterStats{total: len(servers)}
	var out []Chunkserver
	for _, s := range servers {
		switch {
		case slices.Contains(exclude, s.ID):
			stats.excluded++
		case !s.Alive:
			stats.dead++
		case full(s, cfg.MaxUsedFraction):
			stats.full++
		case zones[s.Zone]:
			stats.sameZone++
		default:
			out = append(out, s)
		}
	}
	return out, stats
}

// memberZones returns the zones of the servers in members.
func memberZones(servers []Chunkserver, members []uint64) map[string]bool {
	zones := make(map[string]bool, len(members))
	for _, s := range servers {
		if slices.Contains(members, s.ID) {
			zones[s.Zone] = true
		}
	}
	return zones
}

// sharedCounts returns, for every server, how many copysets of existing it
// shares with the servers in members, counted once per member.
func sharedCounts(existing []Copyset, members []uint64) map[uint64]int {
	shared := make(map[uint64]int)
	for _, c := range existing {
		n := 0
		for _, m := range c.Members {
			if slices.Contains(members, m) {
				n++
			}
		}
		for _, m := range c.Members {
			shared[m] += n
		}
	}
	return shared
}

// rank sorts cands best first.
func rank(cands []Chunkserver, shared map[uint64]int) {
	slices.SortFunc(cands, func(a, b Chunkserver) int {
		return cmp.Or(
			cmp.Compare(free(b), free(a)),
			cmp.Compare(a.Copysets, b.Copysets),
			cmp.Compare(shared[a.ID], shared[b.ID]),
			cmp.Compare(a.ID, b.ID),
		)
	})
}
