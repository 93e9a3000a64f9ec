package master

import (
	"fmt"
	"log/slog"
	"time"

	"basalt/rss/gossip"
	"basalt/rss/rsspb"
)

// Dialer returns a client of the worker whose gRPC address is addr. The
// Server calls it for every call to a worker, from many goroutines, so it
// must be safe for concurrent use and should reuse connections.
type Dialer func(addr string) (rsspb.WorkerClient, error)

// Config configures a Server. Build one with DefaultConfig and fill in
// Members and Dialer; a zero optional field means its default.
type Config struct {
	// Members returns the live cluster members, typically
	// (*gossip.Node).Members; only members with Role gossip.RoleWorker
	// take partitions. Called on every placement and Status, from many
	// goroutines. Required.
	Members func() []gossip.Meta
	// Dialer connects to workers, for Commit and DeleteShuffle. Required.
	Dialer Dialer
	// Placement tunes where partitions go.
	Placement PlacementConfig

	// AppLease is how long an application stays registered without a
	// heartbeat. Default 60s.
	AppLease time.Duration
	// ExpiryInterval is how often expired leases are collected. Default 1s.
	ExpiryInterval time.Duration
	// CommitTimeout bounds the workers' Commit calls of one CommitShuffle
	// (the caller's deadline applies too). Default 60s.
	CommitTimeout time.Duration
	// DeleteTimeout bounds one DeleteShuffle call to a worker. Default 10s.
	DeleteTimeout time.Duration
	// DeleteAttempts is how many times a failed DeleteShuffle call to a
	// worker is tried before it is given up (and logged). Default 5.
	DeleteAttempts int
	// DeleteBackoff is the wait before the second attempt, doubled for
	// each further one (at most 30s). Default 500ms.
	DeleteBackoff time.Duration

	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Clock returns the current time; leases are measured with it.
	// Default time.Now; tests pass a manual clock.
	Clock func() time.Time
	// Seed seeds placement's random choices and nothing else (tokens come
	// from crypto/rand). 0 means a seed drawn at random.
	Seed uint64
}

// Defaults of Config.
const (
	DefaultAppLease       = 60 * time.Second
	DefaultExpiryInterval = time.Second
	DefaultCommitTimeout  = 60 * time.Second
	DefaultDeleteTimeout  = 10 * time.Second
	DefaultDeleteAttempts = 5
	DefaultDeleteBackoff  = 500 * time.Millisecond
)

// maxDeleteBackoff caps the wait between DeleteShuffle attempts.
const maxDeleteBackoff = 30 * time.Second

// DefaultConfig returns a Config with every optional field set to its
// default; Members and Dialer must still be set.
func DefaultConfig() Config {
	return Config{
		AppLease:       DefaultAppLease,
		ExpiryInterval: DefaultExpiryInterval,
		CommitTimeout:  DefaultCommitTimeout,
		DeleteTimeout:  DefaultDeleteTimeout,
		DeleteAttempts: DefaultDeleteAttempts,
		DeleteBackoff:  DefaultDeleteBackoff,
		Logger:         slog.Default(),
		Clock:          time.Now,
	}
}

// Validate fills zero optional fields of c with their defaults and
// reports the first remaining problem, wrapped in ErrInvalidConfig.
func (c *Config) Validate() error {
	c.fillDefaults()
	switch {
	case c.Members == nil:
		return fmt.Errorf("%w: Members is required", ErrInvalidConfig)
	case c.Dialer == nil:
		return fmt.Errorf("%w: Dialer is required", ErrInvalidConfig)
	case c.AppLease < 0 || c.ExpiryInterval < 0 || c.CommitTimeout < 0 || c.DeleteTimeout < 0 || c.DeleteBackoff < 0:
		return fmt.Errorf("%w: durations must be positive", ErrInvalidConfig)
	case c.DeleteAttempts < 0:
		return fmt.Errorf("%w: DeleteAttempts %d is negative", ErrInvalidConfig, c.DeleteAttempts)
	}
	return nil
}

func (c *Config) fillDefaults() {
	d := DefaultConfig()
	setDefault(&c.AppLease, d.AppLease)
	setDefault(&c.ExpiryInterval, d.ExpiryInterval)
	setDefault(&c.CommitTimeout, d.CommitTimeout)
	setDefault(&c.DeleteTimeout, d.DeleteTimeout)
	setDefault(&c.DeleteAttempts, d.DeleteAttempts)
	setDefault(&c.DeleteBackoff, d.DeleteBackoff)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	c.Placement.fillDefaults()
}
