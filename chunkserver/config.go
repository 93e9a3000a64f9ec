package chunkserver

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrInvalidConfig wraps configuration errors.
var ErrInvalidConfig = errors.New("chunkserver: invalid config")

// Config configures a chunkserver. Zero fields take the defaults noted.
type Config struct {
	// Dir holds everything the chunkserver stores. Required.
	Dir string `yaml:"data"`
	// Listen is the gRPC address (data API and raft). Default
	// 127.0.0.1:6800; port 0 picks a free port.
	Listen string `yaml:"listen"`
	// Advertise is the address registered with the MDS; default the
	// address actually listened on.
	Advertise string `yaml:"advertise"`
	// HTTP serves /metrics and /healthz. Default 127.0.0.1:6801; empty
	// disables it (in-process tests).
	HTTP string `yaml:"http"`
	// MDS is the metadata server's gRPC address. Default 127.0.0.1:6700.
	MDS string `yaml:"mds"`
	// Zone is this server's failure domain. Default "zone1".
	Zone string `yaml:"zone"`
	// Capacity in bytes reported to the MDS. Default 100 GiB.
	Capacity uint64 `yaml:"capacity"`
	// HeartbeatInterval between heartbeats to the MDS. Default 2s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// CheckpointInterval between copyset checkpoints (and log
	// truncations). Default 30s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// RaftTick is the raft tick. Default 100ms (elections after 1-2s).
	RaftTick time.Duration `yaml:"raft_tick"`
	// PoolFiles is the number of preallocated chunk files kept ready.
	// Default 8.
	PoolFiles int `yaml:"pool_files"`
	// LogLevel: debug, info, warn, error. Default info.
	LogLevel string `yaml:"log_level"`

	// FS is the filesystem (tests). Default vfs.Default.
	FS vfs.FS `yaml:"-"`
	// Logger (tests). Default built from LogLevel.
	Logger *slog.Logger `yaml:"-"`
}

// DefaultConfig returns the documented defaults (Dir unset).
func DefaultConfig() Config {
	return Config{
		Listen: "127.0.0.1:6800", HTTP: "127.0.0.1:6801", MDS: "127.0.0.1:6700", Zone: "zone1",
		Capacity: 100 << 30, HeartbeatInterval: 2 * time.Second, CheckpointInterval: 30 * time.Second,
		RaftTick: 100 * time.Millisecond, PoolFiles: 8, LogLevel: "info", FS: vfs.Default,
	}
}

// Validate fills zero fields with defaults and checks the rest.
func (c *Config) Validate() error {
	d := DefaultConfig()
	fill(&c.Listen, d.Listen)
	fill(&c.MDS, d.MDS)
	fill(&c.Zone, d.Zone)
	fill(&c.Capacity, d.Capacity)
	fill(&c.HeartbeatInterval, d.HeartbeatInterval)
	fill(&c.CheckpointInterval, d.CheckpointInterval)
	fill(&c.RaftTick, d.RaftTick)
	fill(&c.PoolFiles, d.PoolFiles)
	if c.FS == nil {
		c.FS = d.FS
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dir == "" {
		return fmt.Errorf("%w: data directory is required", ErrInvalidConfig)
	}
	return nil
}

func fill[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
