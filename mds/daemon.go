package mds

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"

	"basalt/internal/daemon"
	"basalt/mds/mdspb"
)

// DaemonConfig is the configuration of the basalt-mds process. Each field
// is a command-line flag and a YAML key of the --config file (flags given
// on the command line win over the file).
type DaemonConfig struct {
	// Config is the YAML file to load (--config); empty: none.
	Config string `yaml:"-"`
	// Listen is the gRPC address (--listen, listen). Default 127.0.0.1:6700.
	Listen string `yaml:"listen"`
	// HTTP is the address serving /metrics and /healthz (--http, http).
	// Default 127.0.0.1:6701.
	HTTP string `yaml:"http"`
	// Data is the data directory (--data, data). Default ./basalt-data/mds.
	Data string `yaml:"data"`
	// ChunkSize is Config.ChunkSize in bytes (--chunk-size, chunk_size).
	ChunkSize uint64 `yaml:"chunk_size"`
	// SegmentSize is Config.SegmentSize in bytes (--segment-size,
	// segment_size).
	SegmentSize uint64 `yaml:"segment_size"`
	// CopysetsPerChunkserver is Config.CopysetsPerChunkserver
	// (--copysets-per-chunkserver, copysets_per_chunkserver).
	CopysetsPerChunkserver int `yaml:"copysets_per_chunkserver"`
	// LogLevel is debug, info, warn or error (--log-level, log_level).
	// Default info.
	LogLevel string `yaml:"log_level"`
}

// DefaultDaemonConfig returns the defaults of every DaemonConfig field.
func DefaultDaemonConfig() DaemonConfig {
	return DaemonConfig{
		Listen:                 "127.0.0.1:6700",
		HTTP:                   "127.0.0.1:6701",
		Data:                   "./basalt-data/mds",
		ChunkSize:              DefaultChunkSize,
		SegmentSize:            DefaultSegmentSize,
		CopysetsPerChunkserver: DefaultCopysetsPerChunkserver,
		LogLevel:               "info",
	}
}

// flagSet binds the flags of the basalt-mds command to c.
func (c *DaemonConfig) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("basalt-mds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Config, "config", c.Config, "YAML file with the settings below, in snake_case (flags override it)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "gRPC listen address")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "listen address for /metrics and /healthz")
	fs.StringVar(&c.Data, "data", c.Data, "data directory")
	fs.Uint64Var(&c.ChunkSize, "chunk-size", c.ChunkSize, "chunk size in bytes (fixed when the data directory is created)")
	fs.Uint64Var(&c.SegmentSize, "segment-size", c.SegmentSize, "segment size in bytes, a multiple of the chunk size (fixed like it)")
	fs.IntVar(&c.CopysetsPerChunkserver, "copysets-per-chunkserver", c.CopysetsPerChunkserver, "copysets per chunkserver in the pool")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	return fs
}

// shutdownTimeout bounds the graceful stop of the gRPC server; calls still
// running after it are cut.
const shutdownTimeout = 10 * time.Second

// Daemon is a running basalt-mds: the Server behind a gRPC server, and the
// HTTP endpoint for /metrics and /healthz.
type Daemon struct {
	log  *slog.Logger
	srv  *Server
	gs   *grpc.Server
	lis  net.Listener
	http *daemon.HTTP
}

// StartDaemon parses args (flags, and the --config YAML file), opens the
// Server and starts listening; Run serves. Logs go to stderr.
func StartDaemon(args []string, stderr io.Writer) (*Daemon, error) {
	dc := DefaultDaemonConfig()
	if err := daemon.ParseFlags(dc.flagSet(stderr), args, &dc); err != nil {
		return nil, err
	}
	log, err := daemon.NewLogger(stderr, dc.LogLevel)
	if err != nil {
		return nil, err
	}
	cfg, err := dc.serverConfig(log)
	if err != nil {
		return nil, err
	}
	srv, err := New(cfg)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, srv: srv}
	if err := d.listen(dc); err != nil {
		return nil, errors.Join(err, srv.Close())
	}
	return d, nil
}

// serverConfig builds the Server's Config. The data directory is made
// absolute so that creating it syncs every level up to the root.
func (c *DaemonConfig) serverConfig(log *slog.Logger) (Config, error) {
	dir, err := filepath.Abs(c.Data)
	if err != nil {
		return Config{}, fmt.Errorf("%w: data directory %q: %w", daemon.ErrConfig, c.Data, err)
	}
	cfg := DefaultConfig()
	cfg.Dir, cfg.FS, cfg.Logger = dir, vfs.Default, log
	cfg.ChunkSize, cfg.SegmentSize = c.ChunkSize, c.SegmentSize
	cfg.CopysetsPerChunkserver = c.CopysetsPerChunkserver
	return cfg, nil
}

// listen opens the gRPC listener and starts the HTTP endpoint.
func (d *Daemon) listen(dc DaemonConfig) error {
	reg, err := daemon.NewRegistry(d.srv.Collectors()...)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", dc.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", dc.Listen, err)
	}
	h, err := daemon.ServeHTTP(dc.HTTP, reg, d.srv.Health)
	if err != nil {
		return errors.Join(err, lis.Close())
	}
	d.lis, d.http = lis, h
	d.gs = grpc.NewServer()
	mdspb.RegisterMDSServer(d.gs, d.srv)
	return nil
}

// Addr returns the gRPC address the daemon listens on.
func (d *Daemon) Addr() string { return d.lis.Addr().String() }

// HTTPAddr returns the address serving /metrics and /healthz.
func (d *Daemon) HTTPAddr() string { return d.http.Addr }

// Run serves until ctx is done, then shuts down: a graceful gRPC stop
// (bounded by 10 s), the HTTP endpoint, the store. It returns nil after a
// clean shutdown, or the error that stopped serving.
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("mds serving", "grpc", d.Addr(), "http", d.HTTPAddr())
	served := make(chan error, 1)
	go func() { served <- d.gs.Serve(d.lis) }()
	var err error
	select {
	case <-ctx.Done():
		d.log.Info("mds shutting down")
	case err = <-served:
		err = fmt.Errorf("serving gRPC: %w", err)
	}
	err = errors.Join(err, d.shutdown())
	d.log.Info("mds stopped", "err", err)
	return err
}

// shutdown stops the gRPC server gracefully (then forcibly after
// shutdownTimeout), the HTTP endpoint and the Server.
func (d *Daemon) shutdown() error {
	daemon.StopGRPC(d.gs, shutdownTimeout, d.log)
	return errors.Join(d.http.Close(), d.srv.Close())
}

// RunDaemon is the basalt-mds command: it parses args, serves until ctx is
// done and shuts down cleanly, returning nil then. --help prints the flags
// to stderr and returns nil.
func RunDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	return daemon.Main(ctx, func() (*Daemon, error) { return StartDaemon(args, stderr) })
}
