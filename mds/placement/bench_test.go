package placement_test

import (
	"fmt"
	"testing"

	"basalt/mds/placement"
)

// BenchmarkPlanPool measures laying out a pool with the default 100
// copysets per server.
func BenchmarkPlanPool(b *testing.B) {
	for _, perZone := range []int{10, 100, 300} {
		b.Run(fmt.Sprintf("3x%d", perZone), func(b *testing.B) {
			servers := topology(perZone, perZone, perZone)
			rng := newRNG(b, 1)
			for b.Loop() {
				if _, err := placement.PlanPool(placement.DefaultConfig(), servers, rng); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlace measures one re-replication choice in a 900-server pool.
func BenchmarkPlace(b *testing.B) {
	servers := topology(300, 300, 300)
	rng := newRNG(b, 1)
	existing, err := placement.PlanPool(placement.DefaultConfig(), servers, rng)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := placement.Place(placement.DefaultConfig(), servers, existing, existing[0].Members[1:], rng); err != nil {
			b.Fatal(err)
		}
	}
}
