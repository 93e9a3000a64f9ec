package worker

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/rss/rsspb"
)

// Defaults of Config.
const (
	DefaultMemoryLimitBytes  = 256 << 20
	DefaultFlushBytes        = 256 << 10
	DefaultFlushInterval     = 50 * time.Millisecond
	DefaultFetchChunkBytes   = 3 << 20
	DefaultDiskReserveBytes  = 64 << 20
	DefaultCommitParallelism = 16
)

// MaxMessageBytes is the largest gRPC message the worker's default dialer
// sends or receives, and the limit basalt-rss-worker sets on its server:
// a PushRequest (one or more batches) must fit in it.
const MaxMessageBytes = 64 << 20

// Dialer returns a client for the worker at addr (host:port). The Worker
// calls it once per replica address and keeps the client until Close; a
// Dialer given in Config owns the connections it makes (the Worker never
// closes them). It is called from Push handlers, concurrently.
type Dialer func(addr string) (rsspb.WorkerClient, error)

// Config configures a Worker. Zero fields take their defaults (see
// Validate).
type Config struct {
	// Dirs are the data directories, one per disk. Partition files are
	// spread among them (a new file goes to the directory with the fewest
	// open partition files, ties in turn); the Pebble index lives in
	// Dirs[0]/index. Required; the order may change between runs, the set
	// may not (files in a removed directory are lost).
	Dirs []string
	// FS is the filesystem. Default vfs.Default; tests pass an in-memory or
	// error-injecting FS.
	FS vfs.FS
	// MemoryLimitBytes is the admission budget: the bytes of pushed and
	// replicated batches (data plus header) received but not yet
	// acknowledged. A batch that would exceed it is refused with
	// ResourceExhausted; a batch larger than the whole budget is invalid.
	// Default 256 MiB.
	MemoryLimitBytes int64
	// AppMemoryLimitBytes is the per-application quota of that budget:
	// the most bytes one application's batches (pushed or replicated)
	// may hold on this worker at once, so that one heavy application
	// cannot take the whole budget and stall the others. A batch that
	// would exceed it is refused with ResourceExhausted (the client backs
	// off and pushes elsewhere) while other applications are still
	// admitted; a batch larger than the quota is invalid. Default (zero
	// or negative): MemoryLimitBytes, no per-application limit; at most
	// MemoryLimitBytes.
	AppMemoryLimitBytes int64
	// FlushBytes is the size at which a partition file's in-memory buffer
	// is written (one write(2)). Default 256 KiB.
	FlushBytes int
	// FlushInterval is the longest a batch waits in a partition file's
	// buffer before it is written; batches are acknowledged only once
	// written, so this bounds the added acknowledgement latency. Default
	// 50 ms; negative: no waiting, the batches of each request are written
	// as soon as they are appended.
	FlushInterval time.Duration
	// DiskReserveBytes is the free space, in bytes, that partition file
	// writes leave on each data directory's filesystem: a write that would
	// leave less fails with ErrDiskFull, as if the disk were full. The
	// reserve keeps room for the Pebble index in Dirs[0], whose WAL must
	// never meet a full disk (Pebble treats a failed WAL write as fatal and
	// the process would crash at the next Commit). Filesystems whose usage
	// cannot be read (in-memory ones) are not checked. Default 64 MiB;
	// negative: no reserve.
	DiskReserveBytes int64
	// FetchChunkBytes is the most batch data Fetch puts in one
	// FetchResponse (a single larger batch is sent alone). Default 3 MiB,
	// so that a response fits gRPC's default 4 MiB receive limit.
	FetchChunkBytes int
	// CommitParallelism is how many partition files a commit flushes and
	// fsyncs at once: a wide shuffle has thousands, and concurrent fsyncs
	// share the file system's journal commits where sequential ones each
	// wait for their own. Default 16; 1 commits one file at a time.
	CommitParallelism int
	// Dialer reaches replica workers. Default: a gRPC client without
	// transport security, with MaxMessageBytes as the message size limits.
	Dialer Dialer
	// Logger receives the worker's logs. Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default filled in; Dirs must
// be set.
func DefaultConfig() Config {
	return Config{
		FS:                vfs.Default,
		MemoryLimitBytes:  DefaultMemoryLimitBytes,
		FlushBytes:        DefaultFlushBytes,
		FlushInterval:     DefaultFlushInterval,
		FetchChunkBytes:   DefaultFetchChunkBytes,
		DiskReserveBytes:  DefaultDiskReserveBytes,
		CommitParallelism: DefaultCommitParallelism,
		Logger:            slog.Default(),
	}
}

// Validate fills zero fields with their defaults and checks the rest. It
// leaves Dialer nil (New supplies its own dialer then).
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.FS == nil {
		c.FS = d.FS
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.MemoryLimitBytes == 0 {
		c.MemoryLimitBytes = d.MemoryLimitBytes
	}
	if c.AppMemoryLimitBytes <= 0 {
		c.AppMemoryLimitBytes = c.MemoryLimitBytes
	}
	if c.FlushBytes == 0 {
		c.FlushBytes = d.FlushBytes
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.FetchChunkBytes == 0 {
		c.FetchChunkBytes = d.FetchChunkBytes
	}
	if c.DiskReserveBytes == 0 {
		c.DiskReserveBytes = d.DiskReserveBytes
	}
	if c.CommitParallelism == 0 {
		c.CommitParallelism = d.CommitParallelism
	}
	return c.check()
}

// check reports the first invalid field of a Config with defaults filled.
func (c *Config) check() error {
	switch {
	case len(c.Dirs) == 0:
		return fmt.Errorf("%w: Dirs is required", ErrInvalidConfig)
	case c.MemoryLimitBytes < headerSize:
		return fmt.Errorf("%w: MemoryLimitBytes %d is below %d", ErrInvalidConfig, c.MemoryLimitBytes, headerSize)
	case c.AppMemoryLimitBytes < headerSize || c.AppMemoryLimitBytes > c.MemoryLimitBytes:
		return fmt.Errorf("%w: AppMemoryLimitBytes %d is outside [%d, MemoryLimitBytes %d]", ErrInvalidConfig,
			c.AppMemoryLimitBytes, headerSize, c.MemoryLimitBytes)
	case c.FlushBytes < 0:
		return fmt.Errorf("%w: FlushBytes %d is negative", ErrInvalidConfig, c.FlushBytes)
	case c.FetchChunkBytes < 0:
		return fmt.Errorf("%w: FetchChunkBytes %d is negative", ErrInvalidConfig, c.FetchChunkBytes)
	case c.CommitParallelism < 0:
		return fmt.Errorf("%w: CommitParallelism %d is negative", ErrInvalidConfig, c.CommitParallelism)
	}
	seen := map[string]bool{}
	for _, dir := range c.Dirs {
		if dir == "" || seen[dir] {
			return fmt.Errorf("%w: Dirs %q has an empty or repeated entry", ErrInvalidConfig, c.Dirs)
		}
		seen[dir] = true
	}
	return nil
}
