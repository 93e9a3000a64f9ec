package worker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"

	"basalt/internal/daemon"
	"basalt/rss/gossip"
	"basalt/rss/rsspb"
)

// DaemonConfig is the configuration of the basalt-rss-worker process.
// Each field is a command-line flag and a YAML key of the --config file
// (flags given on the command line win over the file).
type DaemonConfig struct {
	// Config is the YAML file to load (--config); empty: none.
	Config string `yaml:"-"`
	// Listen is the gRPC address (--listen, listen). Default
	// 127.0.0.1:9097.
	Listen string `yaml:"listen"`
	// HTTP is the address serving /metrics and /healthz (--http, http).
	// Default 127.0.0.1:9098.
	HTTP string `yaml:"http"`
	// Dirs is the comma-separated list of data directories, one per disk
	// (--dirs, dirs). Default ./basalt-data/rss-worker.
	Dirs string `yaml:"dirs"`
	// MemoryLimit is Config.MemoryLimitBytes in bytes (--memory-limit,
	// memory_limit). Default 256 MiB.
	MemoryLimit int64 `yaml:"memory_limit"`
	// AppMemoryLimit is Config.AppMemoryLimitBytes in bytes, the
	// per-application share of MemoryLimit (--app-memory-limit,
	// app_memory_limit). Default 0: no per-application limit.
	AppMemoryLimit int64 `yaml:"app_memory_limit"`
	// FlushBytes is Config.FlushBytes (--flush-bytes, flush_bytes).
	// Default 256 KiB.
	FlushBytes int `yaml:"flush_bytes"`
	// FlushInterval is Config.FlushInterval (--flush-interval,
	// flush_interval). Default 50ms; negative: no batching.
	FlushInterval time.Duration `yaml:"flush_interval"`
	// DiskReserve is Config.DiskReserveBytes in bytes (--disk-reserve,
	// disk_reserve). Default 64 MiB; negative: none.
	DiskReserve int64 `yaml:"disk_reserve"`
	// ID names the worker in the cluster (--id, id). Default
	// <hostname>:<gRPC port>.
	ID string `yaml:"id"`
	// GossipBind is the gossip address, TCP and UDP (--gossip-bind,
	// gossip_bind). Default 127.0.0.1:7947 (the master's default is
	// 7946); empty: no gossip.
	GossipBind string `yaml:"gossip_bind"`
	// GossipJoin is the comma-separated list of gossip addresses to join,
	// normally the master's (--gossip-join, gossip_join).
	GossipJoin string `yaml:"gossip_join"`
	// LogLevel is debug, info, warn or error (--log-level, log_level).
	// Default info.
	LogLevel string `yaml:"log_level"`
	// ShutdownDeadline bounds the graceful part of a shutdown
	// (--shutdown-deadline, shutdown_deadline). On SIGTERM (or SIGINT)
	// the worker first decommissions (Worker.StartDecommission: it
	// gossips decommissioning, refuses new pushes, lets the pushes in
	// flight finish and keeps serving committed data), then waits until
	// the master has deleted the data of every application on it (they
	// ended: unregistered or lease expired) or this deadline passes,
	// whichever comes first, and only then stops (Run). Default 30s; zero
	// or negative: do not wait for the applications (the pushes in flight
	// are still drained). A second signal kills the process at once.
	ShutdownDeadline time.Duration `yaml:"shutdown_deadline"`
}

// DefaultShutdownDeadline is DaemonConfig.ShutdownDeadline's default.
const DefaultShutdownDeadline = 30 * time.Second

// DefaultDaemonConfig returns the defaults of every DaemonConfig field.
func DefaultDaemonConfig() DaemonConfig {
	return DaemonConfig{
		Listen: "127.0.0.1:9097", HTTP: "127.0.0.1:9098", Dirs: "./basalt-data/rss-worker",
		MemoryLimit: DefaultMemoryLimitBytes, FlushBytes: DefaultFlushBytes, FlushInterval: DefaultFlushInterval,
		DiskReserve: DefaultDiskReserveBytes, GossipBind: "127.0.0.1:7947", LogLevel: "info",
		ShutdownDeadline: DefaultShutdownDeadline,
	}
}

// flagSet binds the flags of the basalt-rss-worker command to c.
func (c *DaemonConfig) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("basalt-rss-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Config, "config", c.Config, "YAML file with the settings below, in snake_case (flags override it)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "gRPC listen address")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "listen address for /metrics and /healthz")
	fs.StringVar(&c.Dirs, "dirs", c.Dirs, "comma-separated data directories, one per disk (the index lives in the first)")
	fs.Int64Var(&c.MemoryLimit, "memory-limit", c.MemoryLimit, "bytes of pushed batches held before they are acknowledged; over it pushes are refused")
	fs.Int64Var(&c.AppMemoryLimit, "app-memory-limit", c.AppMemoryLimit,
		"per-application quota of --memory-limit: bytes one application's batches may hold at once (0: no per-application limit)")
	fs.IntVar(&c.FlushBytes, "flush-bytes", c.FlushBytes, "bytes buffered per partition file before a write")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "longest a batch waits in memory before it is written (negative: no batching)")
	fs.Int64Var(&c.DiskReserve, "disk-reserve", c.DiskReserve, "bytes of free disk partition file writes leave on each data directory (room for the index); negative: none")
	fs.StringVar(&c.ID, "id", c.ID, "worker id (default <hostname>:<gRPC port>)")
	fs.StringVar(&c.GossipBind, "gossip-bind", c.GossipBind, "gossip (memberlist) address, TCP and UDP; empty: no gossip")
	fs.StringVar(&c.GossipJoin, "gossip-join", c.GossipJoin, "comma-separated gossip addresses to join (the master's)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	fs.DurationVar(&c.ShutdownDeadline, "shutdown-deadline", c.ShutdownDeadline,
		"on SIGTERM, decommission and wait this long at most for the applications' data to be deleted before stopping (0: do not wait)")
	return fs
}

// workerConfig builds the Worker's Config. Data directories are made
// absolute so that creating them syncs every level up to the root.
func (c *DaemonConfig) workerConfig(log *slog.Logger) (Config, error) {
	cfg := DefaultConfig()
	for _, d := range splitList(c.Dirs) {
		abs, err := filepath.Abs(d)
		if err != nil {
			return Config{}, fmt.Errorf("%w: data directory %q: %w", daemon.ErrConfig, d, err)
		}
		cfg.Dirs = append(cfg.Dirs, abs)
	}
	cfg.FS, cfg.Logger = vfs.Default, log
	cfg.MemoryLimitBytes, cfg.FlushBytes, cfg.FlushInterval = c.MemoryLimit, c.FlushBytes, c.FlushInterval
	cfg.DiskReserveBytes, cfg.AppMemoryLimitBytes = c.DiskReserve, c.AppMemoryLimit
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("%w: %w", daemon.ErrConfig, err)
	}
	return cfg, nil
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// shutdownTimeout bounds each step of the shutdown: finishing the pushes
// in flight, then the graceful gRPC stop.
const shutdownTimeout = 10 * time.Second

// Daemon is a running basalt-rss-worker: the Worker behind a gRPC server,
// its gossip node and the HTTP endpoint for /metrics and /healthz.
type Daemon struct {
	log  *slog.Logger
	w    *Worker
	gs   *grpc.Server
	lis  net.Listener
	http *daemon.HTTP
	node *gossip.Node // nil without gossip
	id   string
	addr string // the advertised gRPC address
	// deadline is DaemonConfig.ShutdownDeadline.
	deadline time.Duration
	// serving: Run started the gRPC server, which closes the listener.
	serving bool
}

// StartDaemon parses args (flags, and the --config YAML file), opens the
// Worker, starts listening and joins the gossip cluster (in the
// background); Run serves. Logs go to stderr.
func StartDaemon(args []string, stderr io.Writer) (*Daemon, error) {
	dc := DefaultDaemonConfig()
	if err := daemon.ParseFlags(dc.flagSet(stderr), args, &dc); err != nil {
		return nil, err
	}
	log, err := daemon.NewLogger(stderr, dc.LogLevel)
	if err != nil {
		return nil, err
	}
	cfg, err := dc.workerConfig(log)
	if err != nil {
		return nil, err
	}
	w, err := New(cfg)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, w: w, deadline: dc.ShutdownDeadline}
	if err := d.start(dc); err != nil {
		return nil, errors.Join(err, d.close())
	}
	return d, nil
}

// start opens the gRPC listener, the HTTP endpoint and the gossip node;
// on error the caller closes what opened.
func (d *Daemon) start(dc DaemonConfig) error {
	lis, err := net.Listen("tcp", dc.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", dc.Listen, err)
	}
	d.lis = lis
	d.addr = advertised(lis.Addr().String())
	d.id = dc.ID
	if d.id == "" {
		d.id = hostname() + ":" + port(d.addr)
	}
	reg, err := daemon.NewRegistry(d.w.Collectors()...)
	if err != nil {
		return err
	}
	if d.http, err = daemon.ServeHTTP(dc.HTTP, reg, d.w.Health); err != nil {
		return err
	}
	d.gs = grpc.NewServer(grpc.MaxRecvMsgSize(MaxMessageBytes))
	rsspb.RegisterWorkerServer(d.gs, d.w)
	if dc.GossipBind == "" {
		return nil
	}
	d.node, err = gossip.Start(context.Background(), gossip.Config{
		Name: d.id, BindAddr: dc.GossipBind, Join: splitList(dc.GossipJoin), Meta: d.meta,
		Logger: d.log.With("component", "gossip"),
	})
	return err
}

// meta is what the worker gossips: its live figures.
func (d *Daemon) meta() gossip.Meta {
	return gossip.Meta{
		ID: d.id, Addr: d.addr, Role: gossip.RoleWorker,
		DiskFreeBytes: d.w.DiskFreeBytes(), MemoryUsedBytes: d.w.MemoryUsedBytes(), ActivePartitions: d.w.ActivePartitions(),
		Decommissioning: d.w.Decommissioning(),
	}
}

// advertised returns addr with an unspecified host (0.0.0.0, ::)
// replaced by the hostname, so that others can reach it.
func advertised(addr string) string {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort(hostname(), p)
	}
	return addr
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "0"
	}
	if _, err := strconv.Atoi(p); err != nil {
		return "0"
	}
	return p
}

// Addr returns the gRPC address the daemon listens on.
func (d *Daemon) Addr() string { return d.lis.Addr().String() }

// HTTPAddr returns the address serving /metrics and /healthz.
func (d *Daemon) HTTPAddr() string { return d.http.Addr }

// GossipAddr returns the daemon's gossip address, or "" without gossip.
func (d *Daemon) GossipAddr() string {
	if d.node == nil {
		return ""
	}
	return d.node.Addr()
}

// ID returns the worker's id.
func (d *Daemon) ID() string { return d.id }

// Worker returns the daemon's Worker.
func (d *Daemon) Worker() *Worker { return d.w }

// Run serves until ctx is done, or until the worker, decommissioned by
// the Decommission RPC, holds no more application data
// (Worker.WaitDecommissioned), then shuts down cleanly. When ctx ends it
// first decommissions and waits up to DaemonConfig.ShutdownDeadline for
// the applications' data to be deleted (see there). The shutdown proper
// leaves the gossip cluster, stops taking pushes and lets the pushes in
// flight finish and be acknowledged (Worker.Drain), stops the gRPC server
// gracefully (fetches and commits finish), each step bounded by 10 s,
// then closes the HTTP endpoint and the Worker. It returns nil after a
// clean shutdown, or the error that stopped serving.
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("rss worker serving", "id", d.id, "grpc", d.Addr(), "http", d.HTTPAddr(), "gossip", d.GossipAddr())
	served := make(chan error, 1)
	d.serving = true
	go func() { served <- d.gs.Serve(d.lis) }()
	watch, stopWatching := context.WithCancel(context.Background())
	emptied := make(chan error, 1)
	go func() { emptied <- d.w.WaitDecommissioned(watch) }()
	var err error
	select {
	case <-ctx.Done():
		stopWatching()
		<-emptied
		d.log.Info("rss worker shutting down")
		d.decommission()
	case <-emptied:
		d.log.Info("rss worker decommissioned: no application data left; shutting down")
	case err = <-served:
		stopWatching()
		<-emptied
		err = fmt.Errorf("serving gRPC: %w", err)
	}
	stopWatching()
	err = errors.Join(err, d.shutdown())
	d.log.Info("rss worker stopped", "err", err)
	return err
}

// decommission starts the decommission and waits up to d.deadline for
// the worker to hold no application data.
func (d *Daemon) decommission() {
	s := d.w.StartDecommission()
	if s.Empty() || d.deadline <= 0 {
		return
	}
	d.log.Info("decommissioning: waiting for the applications' data to be deleted", "deadline", d.deadline,
		"applications", len(s.Applications), "partition_files", s.PartitionFiles, "pushes_in_flight", s.PushesInFlight)
	ctx, cancel := context.WithTimeout(context.Background(), d.deadline)
	defer cancel()
	if err := d.w.WaitDecommissioned(ctx); err != nil {
		s = d.w.DecommissionState()
		d.log.Warn("shutdown deadline reached; stopping with application data left", "applications", s.Applications,
			"partition_files", s.PartitionFiles, "pushes_in_flight", s.PushesInFlight)
		return
	}
	d.log.Info("decommissioned: no application data left")
}

// shutdown leaves gossip, drains the pushes, stops gRPC and closes the
// rest.
func (d *Daemon) shutdown() error {
	var errs []error
	if d.node != nil {
		errs = append(errs, d.node.Close())
		d.node = nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	if err := d.w.Drain(ctx); err != nil {
		d.log.Warn("pushes still open after the shutdown timeout; cutting them", "err", err)
	}
	cancel()
	d.stopGRPC()
	return errors.Join(append(errs, d.close())...)
}

// stopGRPC stops the gRPC server gracefully, then forcibly after
// shutdownTimeout.
func (d *Daemon) stopGRPC() { daemon.StopGRPC(d.gs, shutdownTimeout, d.log) }

// close releases what StartDaemon opened, except a serving gRPC server.
func (d *Daemon) close() error {
	var errs []error
	if d.node != nil {
		errs = append(errs, d.node.Close())
	}
	if d.http != nil {
		errs = append(errs, d.http.Close())
	}
	if !d.serving && d.lis != nil {
		errs = append(errs, d.lis.Close())
	}
	return errors.Join(append(errs, d.w.Close())...)
}

// RunDaemon is the basalt-rss-worker command: it parses args, serves
// until ctx is done and shuts down cleanly, returning nil then. --help
// prints the flags to stderr and returns nil.
func RunDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	return daemon.Main(ctx, func() (*Daemon, error) { return StartDaemon(args, stderr) })
}
