package mds_test

import (
	"errors"
	"testing"

	"basalt/mds"
)

func TestConfigValidate(t *testing.T) {
	valid := func() mds.Config { return mds.Config{Dir: "/x"} }
	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatalf("zero config with Dir: %v", err)
	}
	d := mds.DefaultConfig()
	if c.ChunkSize != d.ChunkSize || c.SegmentSize != d.SegmentSize || c.HeartbeatTTL != d.HeartbeatTTL ||
		c.SessionLease != d.SessionLease || c.MinChunkservers != 3 || c.Replicas != 3 || c.Clock == nil || c.Seed == 0 {
		t.Fatalf("defaults not filled: %+v", c)
	}
	for name, mod := range map[string]func(*mds.Config){
		"no dir":              func(c *mds.Config) { c.Dir = "" },
		"chunk not 4k":        func(c *mds.Config) { c.ChunkSize = 1000 },
		"segment not chunks":  func(c *mds.Config) { c.ChunkSize, c.SegmentSize = 8192, 12288 },
		"min below replicas":  func(c *mds.Config) { c.MinChunkservers = 2 },
		"negative ttl":        func(c *mds.Config) { c.HeartbeatTTL = -1 },
		"negative lease":      func(c *mds.Config) { c.SessionLease = -1 },
		"negative copysets":   func(c *mds.Config) { c.CopysetsPerChunkserver = -1 },
		"negative replicas":   func(c *mds.Config) { c.Replicas = -1 },
		"chunk above segment": func(c *mds.Config) { c.ChunkSize, c.SegmentSize = 2<<20, 1<<20 },
	} {
		c := valid()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, mds.ErrInvalidConfig) {
			t.Errorf("%s: got %v, want ErrInvalidConfig", name, err)
		}
	}
}
