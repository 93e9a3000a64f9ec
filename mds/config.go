package mds

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config configures a Server. Build one with DefaultConfig and override
// fields; a zero field means its default where noted.
type Config struct {
	// Dir holds the metadata store (a Pebble DB in Dir/meta). Required
	// unless KV is set.
	Dir string
	// FS is the filesystem for everything under Dir. Default vfs.Default;
	// tests pass vfs.NewMem() or a crashable or error-injecting FS.
	FS vfs.FS
	// KV, when set, is the metadata store to use instead of a PebbleKV
	// under Dir (for a replicated store); the Server does not close it.
	KV KV

	// ChunkSize is the size of a chunk in bytes: a positive multiple of
	// 4096. Default 16 MiB. It is fixed when the store is first created;
	// reopening it with another value fails with ErrInvalidConfig.
	ChunkSize uint64
	// SegmentSize is the size of a segment, the unit of lazy allocation,
	// in bytes: a positive multiple of ChunkSize. Default 1 GiB. Fixed
	// like ChunkSize.
	SegmentSize uint64
	// CopysetsPerChunkserver is the number of copysets the pool puts on
	// each chunkserver. Default 100.
	CopysetsPerChunkserver int
	// Replicas is the number of members of each copyset, each in its own
	// zone. Default 3.
	Replicas int
	// MinChunkservers is the number of alive chunkservers with free space
	// (in at least Replicas zones) that must have registered before the
	// pool is laid out. Must be at least Replicas. Default 3.
	MinChunkservers int
	// HeartbeatTTL is how long a chunkserver stays alive after its last
	// heartbeat (or registration). Default 10s.
	HeartbeatTTL time.Duration
	// SessionLease is how long a writer session stays valid after it was
	// opened or last renewed. Default 30s.
	SessionLease time.Duration

	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Clock returns the current time; every lease and TTL is measured with
	// it. Default time.Now; tests pass a manual clock.
	Clock func() time.Time
	// Seed seeds the random choices (pool layout, ties between copysets
	// when chunks are placed), so a seeded run is reproducible. 0 means a
	// seed drawn from the clock at New.
	Seed uint64
}

// Defaults of Config.
const (
	DefaultChunkSize              = 16 << 20
	DefaultSegmentSize            = 1 << 30
	DefaultCopysetsPerChunkserver = 100
	DefaultReplicas               = 3
	DefaultMinChunkservers        = 3
	DefaultHeartbeatTTL           = 10 * time.Second
	DefaultSessionLease           = 30 * time.Second
)

// blockSize is the unit of volume sizes and chunk sizes.
const blockSize = 4096

// DefaultConfig returns a Config with every optional field set to its
// default. Dir (or KV) must still be filled in.
func DefaultConfig() Config {
	return Config{
		FS:                     vfs.Default,
		ChunkSize:              DefaultChunkSize,
		SegmentSize:            DefaultSegmentSize,
		CopysetsPerChunkserver: DefaultCopysetsPerChunkserver,
		Replicas:               DefaultReplicas,
		MinChunkservers:        DefaultMinChunkservers,
		HeartbeatTTL:           DefaultHeartbeatTTL,
		SessionLease:           DefaultSessionLease,
		Logger:                 slog.Default(),
		Clock:                  time.Now,
	}
}

// Validate fills zero optional fields of c with their defaults and reports
// the first remaining problem, wrapped in ErrInvalidConfig.
func (c *Config) Validate() error {
	c.fillDefaults()
	switch {
	case c.Dir == "" && c.KV == nil:
		return fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	case c.ChunkSize%blockSize != 0:
		return fmt.Errorf("%w: ChunkSize %d is not a multiple of %d", ErrInvalidConfig, c.ChunkSize, blockSize)
	case c.SegmentSize%c.ChunkSize != 0:
		return fmt.Errorf("%w: SegmentSize %d is not a multiple of ChunkSize %d", ErrInvalidConfig, c.SegmentSize, c.ChunkSize)
	case c.CopysetsPerChunkserver < 1 || c.Replicas < 1:
		return fmt.Errorf("%w: CopysetsPerChunkserver and Replicas must be positive", ErrInvalidConfig)
	case c.MinChunkservers < c.Replicas:
		return fmt.Errorf("%w: MinChunkservers %d is below Replicas %d", ErrInvalidConfig, c.MinChunkservers, c.Replicas)
	case c.HeartbeatTTL < 0 || c.SessionLease < 0:
		return fmt.Errorf("%w: HeartbeatTTL and SessionLease must be positive", ErrInvalidConfig)
	}
	return nil
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	setDefault(&c.FS, d.FS)
	setDefault(&c.ChunkSize, d.ChunkSize)
	setDefault(&c.SegmentSize, d.SegmentSize)
	setDefault(&c.CopysetsPerChunkserver, d.CopysetsPerChunkserver)
	setDefault(&c.Replicas, d.Replicas)
	setDefault(&c.MinChunkservers, d.MinChunkservers)
	setDefault(&c.HeartbeatTTL, d.HeartbeatTTL)
	setDefault(&c.SessionLease, d.SessionLease)
	setDefault(&c.Logger, d.Logger)
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.Seed == 0 {
		c.Seed = uint64(c.Clock().UnixNano())
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
