package grpctransport_test

import (
	"errors"
	"testing"

	"basalt/raft/grpctransport"
)

func TestConfigValidate(t *testing.T) {
	res := grpctransport.NewStaticResolver(nil)
	valid := func() grpctransport.Config {
		c := grpctransport.DefaultConfig()
		c.HostID, c.Resolver = 1, res
		return c
	}
	tests := []struct {
		name   string
		mutate func(*grpctransport.Config)
		ok     bool
	}{
		{"defaults", func(*grpctransport.Config) {}, true},
		{"zero optional fields", func(c *grpctransport.Config) { *c = grpctransport.Config{HostID: 1, Resolver: res} }, true},
		{"no host", func(c *grpctransport.Config) { c.HostID = 0 }, false},
		{"no resolver", func(c *grpctransport.Config) { c.Resolver = nil }, false},
		{"negative queue", func(c *grpctransport.Config) { c.QueueSize = -1 }, false},
		{"negative batch", func(c *grpctransport.Config) { c.MaxBatchBytes = -1 }, false},
		{"negative chunk", func(c *grpctransport.Config) { c.SnapshotChunkBytes = -1 }, false},
		{"negative dial timeout", func(c *grpctransport.Config) { c.DialTimeout = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, grpctransport.ErrInvalidConfig)) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			tr, err := grpctransport.New(c)
			if tt.ok != (err == nil) {
				t.Fatalf("New() error = %v, want ok=%v", err, tt.ok)
			}
			if tr != nil {
				_ = tr.Close()
			}
		})
	}
}

func TestStaticResolver(t *testing.T) {
	r := grpctransport.NewStaticResolver(map[uint64]string{1: "a:1"})
	if addr, err := r.Resolve(1); err != nil || addr != "a:1" {
		t.Errorf("Resolve(1) = %q, %v", addr, err)
	}
	if _, err := r.Resolve(2); !errors.Is(err, grpctransport.ErrUnknownHost) {
		t.Errorf("Resolve(2) error = %v, want ErrUnknownHost", err)
	}
	r.Set(2, "b:2")
	r.Set(1, "")
	if addr, err := r.Resolve(2); err != nil || addr != "b:2" {
		t.Errorf("Resolve(2) after Set = %q, %v", addr, err)
	}
	if _, err := r.Resolve(1); !errors.Is(err, grpctransport.ErrUnknownHost) {
		t.Errorf("Resolve(1) after removal error = %v, want ErrUnknownHost", err)
	}
	var zero grpctransport.StaticResolver
	zero.Set(3, "c:3")
	if addr, _ := zero.Resolve(3); addr != "c:3" {
		t.Errorf("zero StaticResolver Resolve(3) = %q", addr)
	}
}
