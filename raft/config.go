package raft

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config configures a Host. Build one with DefaultConfig and override fields;
// a zero field means "use the default" where noted.
type Config struct {
	// HostID identifies this host; it is also the raft ID of every replica the
	// host runs. Must be non-zero and unique in the cluster.
	HostID uint64
	// Dir holds the Pebble DB (Dir/raft) and staged snapshots
	// (Dir/snapshots). Required.
	Dir string
	// FS is the filesystem for everything under Dir. Default vfs.Default;
	// tests pass vfs.NewStrictMem() or an error-injecting FS.
	FS vfs.FS
	// Transport carries messages to other hosts. Required.
	Transport Transport
	// Factory creates each group's state machine. Required.
	Factory Factory
	// Logger receives the host's logs. Default slog.Default().
	Logger *slog.Logger

	// TickInterval is the duration of one raft tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks (randomized in
	// [ElectionTicks, 2*ElectionTicks) by raft). Default 10.
	ElectionTicks int
	// HeartbeatTicks is the leader's heartbeat interval in ticks. Default 2
	// (200ms): with hundreds of groups per host, heartbeats are a large part
	// of the raft traffic, and five per election timeout are plenty.
	HeartbeatTicks int
	// LeaseReads makes ReadIndex answer from the leader's lease (CheckQuorum
	// keeps a partitioned leader from believing it still leads) instead of a
	// heartbeat round. Default true (set in DefaultConfig).
	LeaseReads bool
	// MaxProposalBytes caps the size of one proposed command; larger ones
	// fail with ErrProposalTooLarge. Keep it below the transport's largest
	// message (grpctransport: MaxBatchBytes, 4 MiB by default), or an entry
	// could never reach the followers. Default 3 MiB.
	MaxProposalBytes int
	// MaxSizePerMsg caps the bytes of entries in one append message.
	// Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs caps append messages in flight per follower.
	// Default 256.
	MaxInflightMsgs int
	// MaxUncommittedBytes caps a leader's uncommitted entry bytes per group;
	// proposals beyond it fail. Default 64 MiB.
	MaxUncommittedBytes uint64
	// MaxApplyBacklog is the number of committed entries a group may have
	// queued for its state machine before the host stops taking new Ready
	// rounds for that group (backpressure). Default 4096.
	MaxApplyBacklog int
	// LogRetainEntries is how many applied entries are kept behind the state
	// machine's durable index when the log is compacted, so a briefly
	// lagging follower catches up from the log instead of a snapshot.
	// Default 1024.
	LogRetainEntries uint64
	// EntryCacheBytes caps the in-memory cache of recent log entries per
	// group (reads beyond it go to Pebble). Default 1 MiB.
	EntryCacheBytes int
	// MaxConcurrentSnapshots caps snapshot streams this host sends at once.
	// Default 4.
	MaxConcurrentSnapshots int
	// SnapshotTimeout bounds one snapshot transfer. Default 10m.
	SnapshotTimeout time.Duration
	// DisableSync turns off fsync of the raft log. Only for benchmarks that
	// measure everything but the disk; never in production. Default false.
	DisableSync bool
}

// DefaultConfig returns a Config with every optional field set to its
// default. HostID, Dir, Transport and Factory must still be filled in.
func DefaultConfig() Config {
	return Config{
		FS:                     vfs.Default,
		TickInterval:           100 * time.Millisecond,
		ElectionTicks:          10,
		HeartbeatTicks:         2,
		LeaseReads:             true,
		MaxProposalBytes:       3 << 20,
		MaxSizePerMsg:          1 << 20,
		MaxInflightMsgs:        256,
		MaxUncommittedBytes:    64 << 20,
		MaxApplyBacklog:        4096,
		LogRetainEntries:       1024,
		EntryCacheBytes:        1 << 20,
		MaxConcurrentSnapshots: 4,
		SnapshotTimeout:        10 * time.Minute,
	}
}

// Validate reports the first problem with c, wrapped in ErrInvalidConfig.
// It fills zero optional fields with their defaults.
func (c *Config) Validate() error {
	c.fillDefaults()
	switch {
	case c.HostID == 0:
		return fmt.Errorf("%w: HostID must be non-zero", ErrInvalidConfig)
	case c.Dir == "":
		return fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	case c.Transport == nil:
		return fmt.Errorf("%w: Transport is required", ErrInvalidConfig)
	case c.Factory == nil:
		return fmt.Errorf("%w: Factory is required", ErrInvalidConfig)
	case c.HeartbeatTicks >= c.ElectionTicks:
		return fmt.Errorf("%w: HeartbeatTicks (%d) must be below ElectionTicks (%d)",
			ErrInvalidConfig, c.HeartbeatTicks, c.ElectionTicks)
	}
	return nil
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.FS == nil {
		c.FS = d.FS
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	setDefault(&c.TickInterval, d.TickInterval)
	setDefault(&c.ElectionTicks, d.ElectionTicks)
	setDefault(&c.HeartbeatTicks, d.HeartbeatTicks)
	setDefault(&c.MaxProposalBytes, d.MaxProposalBytes)
	setDefault(&c.MaxSizePerMsg, d.MaxSizePerMsg)
	setDefault(&c.MaxInflightMsgs, d.MaxInflightMsgs)
	setDefault(&c.MaxUncommittedBytes, d.MaxUncommittedBytes)
	setDefault(&c.MaxApplyBacklog, d.MaxApplyBacklog)
	setDefault(&c.LogRetainEntries, d.LogRetainEntries)
	setDefault(&c.EntryCacheBytes, d.EntryCacheBytes)
	setDefault(&c.MaxConcurrentSnapshots, d.MaxConcurrentSnapshots)
	setDefault(&c.SnapshotTimeout, d.SnapshotTimeout)
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
