package chunkserver

import (
	"context"
	"flag"
	"fmt"
	"io"

	"basalt/internal/daemon"
)

// RunDaemon runs the basalt-chunkserver daemon with command-line args
// until ctx ends (SIGTERM), then shuts down cleanly. Flags override the
// YAML file given with --config; see --help for every key and default.
func RunDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseDaemonFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := daemon.NewLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Stop()
	if cfg.HTTP != "" {
		reg, err := daemon.NewRegistry(s.Collectors()...)
		if err != nil {
			return err
		}
		h, err := daemon.ServeHTTP(cfg.HTTP, reg, s.Healthy)
		if err != nil {
			return err
		}
		defer h.Close()
	}
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

func parseDaemonFlags(args []string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	cfg.Dir = "basalt-data/chunkserver"
	fs := flag.NewFlagSet("basalt-chunkserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var config string
	fs.StringVar(&config, "config", "", "YAML file with these settings (keys: data, listen, advertise, http, mds, zone, capacity, heartbeat_interval, checkpoint_interval, raft_tick, pool_files, log_level); flags override it")
	fs.StringVar(&cfg.Dir, "data", cfg.Dir, "data directory")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "gRPC address for the data API and raft")
	fs.StringVar(&cfg.Advertise, "advertise", cfg.Advertise, "address registered with the MDS (default: the listen address)")
	fs.StringVar(&cfg.HTTP, "http", cfg.HTTP, "address for /metrics and /healthz (empty: off)")
	fs.StringVar(&cfg.MDS, "mds", cfg.MDS, "metadata server gRPC address")
	fs.StringVar(&cfg.Zone, "zone", cfg.Zone, "failure domain of this server")
	fs.Uint64Var(&cfg.Capacity, "capacity", cfg.Capacity, "capacity in bytes reported to the MDS")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", cfg.HeartbeatInterval, "interval between heartbeats")
	fs.DurationVar(&cfg.CheckpointInterval, "checkpoint-interval", cfg.CheckpointInterval, "interval between copyset checkpoints")
	fs.DurationVar(&cfg.RaftTick, "raft-tick", cfg.RaftTick, "raft tick (elections after 10-20 ticks)")
	fs.IntVar(&cfg.PoolFiles, "pool-files", cfg.PoolFiles, "preallocated chunk files kept ready")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	if err := daemon.ParseFlags(fs, args, &cfg); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected arguments %v", ErrInvalidConfig, fs.Args())
	}
	return cfg, nil
}
