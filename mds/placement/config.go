package placement

import (
	"fmt"
	"math"
)

// Config tunes placement. Build one with DefaultConfig and override fields;
// a zero field means its default.
type Config struct {
	// Replicas is the number of members of each copyset, each on its own
	// chunkserver in its own zone. Default 3.
	Replicas int
	// CopysetsPerServer is the number of copysets PlanPool aims to put on
	// each chunkserver: a pool of n usable chunkservers gets
	// ceil(CopysetsPerServer*n/Replicas) copysets. Default 100.
	CopysetsPerServer int
	// BestFew is how many of the best-ranked candidates Place picks from,
	// uniformly at random, so that allocators deciding concurrently on the
	// same view rarely collide. 1 makes Place deterministic. Default 3.
	BestFew int
	// MaxUsedFraction is the fraction of its capacity a chunkserver may
	// have used and still take copysets; above it the server is full and is
	// never picked. A server with zero capacity is always full. Must be in
	// (0, 1]. Default 0.95.
	MaxUsedFraction float64
}

// DefaultConfig returns a Config with every field set to its default.
func DefaultConfig() Config {
	return Config{
		Replicas:          3,
		CopysetsPerServer: 100,
		BestFew:           3,
		MaxUsedFraction:   0.95,
	}
}

// Validate fills zero fields of c with their defaults and reports the first
// remaining problem, wrapped in ErrInvalidConfig.
func (c *Config) Validate() error {
	c.fillDefaults()
	switch {
	case c.Replicas < 1:
		return fmt.Errorf("%w: Replicas %d is below 1", ErrInvalidConfig, c.Replicas)
	case c.CopysetsPerServer < 1:
		return fmt.Errorf("%w: CopysetsPerServer %d is below 1", ErrInvalidConfig, c.CopysetsPerServer)
	case c.BestFew < 1:
		return fmt.Errorf("%w: BestFew %d is below 1", ErrInvalidConfig, c.BestFew)
	case math.IsNaN(c.MaxUsedFraction) || c.MaxUsedFraction <= 0 || c.MaxUsedFraction > 1:
		return fmt.Errorf("%w: MaxUsedFraction %v is not in (0, 1]", ErrInvalidConfig, c.MaxUsedFraction)
	}
	return nil
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	setDefault(&c.Replicas, d.Replicas)
	setDefault(&c.CopysetsPerServer, d.CopysetsPerServer)
	setDefault(&c.BestFew, d.BestFew)
	setDefault(&c.MaxUsedFraction, d.MaxUsedFraction)
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
