package placement_test

import (
	"errors"
	"math"
	"testing"

	"basalt/mds/placement"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := placement.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if cfg != placement.DefaultConfig() {
		t.Errorf("Validate changed a default config: %+v", cfg)
	}
}

func TestValidateFillsDefaults(t *testing.T) {
	var cfg placement.Config
	if err := cfg.Validate(); err != nil {
		t.Fatalf("zero Config: Validate() = %v", err)
	}
	if cfg != placement.DefaultConfig() {
		t.Errorf("zero Config after Validate = %+v, want %+v", cfg, placement.DefaultConfig())
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*placement.Config)
	}{
		{"negative Replicas", func(c *placement.Config) { c.Replicas = -1 }},
		{"negative CopysetsPerServer", func(c *placement.Config) { c.CopysetsPerServer = -5 }},
		{"negative BestFew", func(c *placement.Config) { c.BestFew = -2 }},
		{"MaxUsedFraction above 1", func(c *placement.Config) { c.MaxUsedFraction = 1.5 }},
		{"negative MaxUsedFraction", func(c *placement.Config) { c.MaxUsedFraction = -0.1 }},
		{"NaN MaxUsedFraction", func(c *placement.Config) { c.MaxUsedFraction = math.NaN() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := placement.DefaultConfig()
			tt.modify(&cfg)
			if err := cfg.Validate(); !errors.Is(err, placement.ErrInvalidConfig) {
				t.Errorf("Validate() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}
