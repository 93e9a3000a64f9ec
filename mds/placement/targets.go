package placement

import (
	"cmp"
	"slices"
)

// zoneTargets splits the count*replicas member slots of a pool's copysets
// over zones with the given numbers of usable servers. Shares are
// proportional to size, except that a zone can take at most count slots
// (one per copyset); the slots a capped zone cannot take are spread over
// the others in proportion to their sizes, repeating until no zone exceeds
// the cap (water-filling). Fractions are rounded by largest remainder, so
// the targets add up to exactly count*replicas when there are at least
// replicas zones.
func zoneTargets(sizes []int, count, replicas int) []int {
	targets := make([]int, len(sizes))
	slots, servers := count*replicas, 0
	for _, n := range sizes {
		servers += n
	}
	for changed := true; changed; {
		changed = false
		for i, n := range sizes {
			// A zone is capped when its share n*slots/servers exceeds count.
			if targets[i] == 0 && n*slots > count*servers {
				targets[i], slots, servers, changed = count, slots-count, servers-n, true
			}
		}
	}
	apportion(targets, sizes, slots, servers)
	return targets
}

// apportion gives the zones whose target is still zero (uncapped: count is
// at least 1) their share of slots, sizes[i]*slots/servers, rounded by
// largest remainder. Each share is at most count, so rounding up keeps it
// at most count.
func apportion(targets, sizes []int, slots, servers int) {
	if servers == 0 {
		return
	}
	var open []int
	for i := range targets {
		if targets[i] == 0 {
			open = append(open, i)
		}
	}
	rem, left := make(map[int]int, len(open)), slots
	for _, i := range open {
		targets[i] = sizes[i] * slots / servers
		rem[i] = sizes[i] * slots % servers
		left -= targets[i]
	}
	slices.SortStableFunc(open, func(a, b int) int { return cmp.Compare(rem[b], rem[a]) })
	for _, i := range open[:left] {
		targets[i]++
	}
}
