package master

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"

	"basalt/rss/gossip"
)

// PlacementConfig tunes where partitions are placed. Zero fields take
// their defaults.
type PlacementConfig struct {
	// MinDiskFreeBytes is the free disk, in bytes, below which a worker
	// takes no new partitions. Default 1 GiB.
	MinDiskFreeBytes uint64
	// DiskFreeTolerance is how much less free disk, in bytes, than the
	// worker with the most a worker may have and still rank equal on
	// disk, so that partition counts decide among them. 1 compares exact
	// bytes. Default 64 GiB.
	DiskFreeTolerance uint64
	// PartitionReserveBytes is the disk, in bytes, each partition placed
	// by one command is assumed to take from its worker while the rest of
	// that command is placed, so that a worker with more free disk does
	// not take every partition of a large shuffle. Default 1 GiB.
	PartitionReserveBytes uint64
}

// Defaults of PlacementConfig.
const (
	DefaultMinDiskFreeBytes      = 1 << 30
	DefaultDiskFreeTolerance     = 64 << 30
	DefaultPartitionReserveBytes = 1 << 30
)

func (c *PlacementConfig) fillDefaults() {
	setDefault(&c.MinDiskFreeBytes, DefaultMinDiskFreeBytes)
	setDefault(&c.DiskFreeTolerance, DefaultDiskFreeTolerance)
	setDefault(&c.PartitionReserveBytes, DefaultPartitionReserveBytes)
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// candidate is a worker that may take partitions, with what one command
// has placed on it so far.
type candidate struct {
	ref      WorkerRef
	diskFree uint64
	// base is the worker's partitions before the command: the larger of
	// what it gossips and what the State has open on it.
	base                int
	primaries, replicas int
}

// placer places the partitions of one command. Its choices depend only
// on its inputs and seed.
type placer struct {
	cfg   PlacementConfig
	cands []*candidate
	rng   *rand.Rand
	stats filterStats
}

// filterStats counts the workers the filters removed, for errors.
type filterStats struct {
	total, notWorker, decommissioning, diskFull int
}

func (f filterStats) String() string {
	return fmt.Sprintf("%d members: %d not workers, %d decommissioning, %d below the free disk minimum",
		f.total, f.notWorker, f.decommissioning, f.diskFull)
}

// newPlacer keeps the workers that may take partitions — role worker,
// not decommissioning, at least MinDiskFreeBytes free; the first of a
// repeated ID — sorted by ID so that the order of workers does not
// matter. open counts the State's open partitions per worker ID.
func newPlacer(cfg PlacementConfig, workers []gossip.Meta, open map[string]int, seed uint64) *placer {
	p := &placer{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	p.stats.total = len(workers)
	seen := map[string]bool{}
	for _, w := range workers {
		switch {
		case w.Role != gossip.RoleWorker || w.ID == "" || seen[w.ID]:
			p.stats.notWorker++
		case w.Decommissioning:
			p.stats.decommissioning++
		case w.DiskFreeBytes < cfg.MinDiskFreeBytes:
			p.stats.diskFull++
		default:
			seen[w.ID] = true
			base := max(int(w.ActivePartitions), open[w.ID])
			p.cands = append(p.cands, &candidate{ref: WorkerRef{ID: w.ID, Addr: w.Addr}, diskFree: w.DiskFreeBytes, base: base})
		}
	}
	slices.SortFunc(p.cands, func(a, b *candidate) int { return cmp.Compare(a.ref.ID, b.ref.ID) })
	return p
}

// diskFree is c's free disk less what this command placed on it.
func (p *placer) diskFree(c *candidate) uint64 {
	reserved := uint64(c.primaries+c.replicas) * p.cfg.PartitionReserveBytes
	return c.diskFree - min(reserved, c.diskFree)
}

// primaryKey ranks candidates equal on disk for a primary: fewer
// partitions counting only primaries of this command (so that primaries
// spread evenly), then fewer partitions in all.
func primaryKey(c *candidate) [2]int {
	return [2]int{c.base + c.primaries, c.base + c.primaries + c.replicas}
}

// replicaKey ranks candidates equal on disk for a replica: fewer
// partitions in all, then fewer replicas of this command.
func replicaKey(c *candidate) [2]int {
	return [2]int{c.base + c.primaries + c.replicas, c.replicas}
}

// pickPrimary picks a primary avoiding the first of excludes that leaves
// a candidate; false when none does.
func (p *placer) pickPrimary(excludes ...[]string) (WorkerRef, bool) {
	c := p.pick(primaryKey, excludes)
	if c == nil {
		return WorkerRef{}, false
	}
	c.primaries++
	return c.ref, true
}

// pickReplica is pickPrimary for a replica.
func (p *placer) pickReplica(excludes ...[]string) (WorkerRef, bool) {
	c := p.pick(replicaKey, excludes)
	if c == nil {
		return WorkerRef{}, false
	}
	c.replicas++
	return c.ref, true
}

// pick returns the best candidate not in the first of excludes that
// leaves any (nil when none does). The best are, among the candidates
// whose free disk is within DiskFreeTolerance of the most free, those
// with the lowest key; one of them is chosen uniformly at random.
// Choosing among the tied best only (rather than among a fixed number of
// the best) keeps placement even however few workers there are, and the
// counts of this command are part of the key, so one command spreads its
// partitions round-robin in a random order.
func (p *placer) pick(key func(*candidate) [2]int, excludes [][]string) *candidate {
	for _, ex := range excludes {
		if best := p.best(ex, key); len(best) > 0 {
			return best[p.rng.IntN(len(best))]
		}
	}
	return nil
}

// best returns the candidates not in exclude that are equal on disk to
// the one with the most free disk and tied for the lowest key, in ID
// order.
func (p *placer) best(exclude []string, key func(*candidate) [2]int) []*candidate {
	var most uint64
	for _, c := range p.cands {
		if !slices.Contains(exclude, c.ref.ID) {
			most = max(most, p.diskFree(c))
		}
	}
	var best []*candidate
	var bestKey [2]int
	for _, c := range p.cands {
		if slices.Contains(exclude, c.ref.ID) || most-p.diskFree(c) >= p.cfg.DiskFreeTolerance {
			continue
		}
		switch k := key(c); {
		case len(best) == 0 || slices.Compare(k[:], bestKey[:]) < 0:
			best, bestKey = []*candidate{c}, k
		case k == bestKey:
			best = append(best, c)
		}
	}
	return best
}
