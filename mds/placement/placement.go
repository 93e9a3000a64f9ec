package placement

import (
	"errors"
	"fmt"
	"math/rand/v2"
)

// Errors returned by the package. Test with errors.Is.
var (
	// ErrInvalidConfig: a Config field or an argument is invalid.
	ErrInvalidConfig = errors.New("placement: invalid config")
	// ErrNotEnoughZones: fewer zones than Config.Replicas have an alive,
	// non-full chunkserver, so no copyset can be placed.
	ErrNotEnoughZones = errors.New("placement: not enough zones")
	// ErrNoCandidate: every chunkserver was filtered out; the error says
	// how many for each reason.
	ErrNoCandidate = errors.New("placement: no candidate chunkserver")
	// ErrDuplicateServer: the same chunkserver ID appears twice in the
	// input.
	ErrDuplicateServer = errors.New("placement: duplicate chunkserver")
)

// Chunkserver is the caller's view of one chunkserver.
type Chunkserver struct {
	// ID identifies the chunkserver; unique within the input.
	ID uint64
	// Zone is the failure domain; copyset members are in distinct zones.
	// The empty string is a zone like any other.
	Zone string
	// Capacity and Used are the server's disk space and its used part, in
	// bytes. Used may exceed Capacity (the server then has no free space).
	Capacity, Used uint64
	// Copysets is the number of copysets already on the server. Place
	// ranks by it; PlanPool, which lays out a new pool, ignores it.
	Copysets int
	// Alive is the caller's liveness verdict; dead servers are never picked.
	Alive bool
}

// Copyset is one replicated group and the chunkservers holding it.
type Copyset struct {
	// ID identifies the copyset (its raft group ID).
	ID uint64
	// Members are the IDs of the chunkservers holding a replica, in no
	// particular order.
	Members []uint64
}

// free returns the unused bytes of s.
func free(s Chunkserver) uint64 {
	if s.Used >= s.Capacity {
		return 0
	}
	return s.Capacity - s.Used
}

// full reports whether s has used more than maxUsed of its capacity.
func full(s Chunkserver, maxUsed float64) bool {
	return s.Capacity == 0 || float64(s.Used) > maxUsed*float64(s.Capacity)
}

// usable reports whether s may take a new replica at all.
func usable(s Chunkserver, cfg Config) bool {
	return s.Alive && !full(s, cfg.MaxUsedFraction)
}

// checkInputs validates cfg (filling its defaults), rng and servers.
func checkInputs(cfg *Config, servers []Chunkserver, rng *rand.Rand) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if rng == nil {
		return fmt.Errorf("%w: rng is nil", ErrInvalidConfig)
	}
	return checkUnique(servers)
}

// checkUnique reports the first chunkserver ID that appears twice.
func checkUnique(servers []Chunkserver) error {
	seen := make(map[uint64]bool, len(servers))
	for _, s := range servers {
		if seen[s.ID] {
			return fmt.Errorf("%w: ID %d appears twice", ErrDuplicateServer, s.ID)
		}
		seen[s.ID] = true
	}
	return nil
}
