package master

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/internal/daemon"
	"basalt/rss/gossip"
	"basalt/rss/masterconn"
	"basalt/rss/rsspb"
)

// DaemonConfig is the configuration of the basalt-rss-master process.
// Each field is a command-line flag and a YAML key of the --config file
// (flags given on the command line win over the file).
type DaemonConfig struct {
	// Config is the YAML file to load (--config); empty: none.
	Config string `yaml:"-"`
	// Listen is the gRPC address (--listen, listen). Default
	// 127.0.0.1:9090.
	Listen string `yaml:"listen"`
	// HTTP is the address serving /metrics and /healthz (--http, http).
	// Default 127.0.0.1:9091.
	HTTP string `yaml:"http"`
	// GossipBind is the gossip address, TCP and UDP (--gossip-bind,
	// gossip_bind). Default 127.0.0.1:7946.
	GossipBind string `yaml:"gossip_bind"`
	// GossipJoin is a comma-separated list of gossip addresses to join
	// (--gossip-join, gossip_join); empty: wait for workers to join this
	// master.
	GossipJoin string `yaml:"gossip_join"`
	// AppLease is Config.AppLease (--app-lease, app_lease). Default 60s.
	AppLease time.Duration `yaml:"app_lease"`
	// MinDiskFree is Config.Placement.MinDiskFreeBytes, in bytes
	// (--min-disk-free, min_disk_free): a worker gossiping less free disk
	// takes no new partitions. Default 1 GiB; 0 also means the default, so
	// 1 admits every worker with any free space (tests with small disks).
	MinDiskFree uint64 `yaml:"min_disk_free"`
	// RaftID is this master's raft host ID (--raft-id, raft_id); 0, the
	// default, runs a single master whose state lives in memory only (a
	// restart forgets every application). Non-zero: the state is
	// replicated to RaftPeers and kept under Data.
	RaftID uint64 `yaml:"raft_id"`
	// RaftPeers lists every master of the group, this one included, as
	// "ID=host:port,..." with each master's gRPC address (--raft-peers,
	// raft_peers): raft traffic shares the gRPC port. Every master gets
	// the same list.
	RaftPeers string `yaml:"raft_peers"`
	// Data is the directory of a replicated master's raft log and state
	// checkpoint (--data, data); required with RaftID.
	Data string `yaml:"data"`
	// CheckpointInterval is how often a replicated master checkpoints its
	// state and truncates the raft log behind it (--checkpoint-interval,
	// checkpoint_interval). Default 10s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// LogLevel is debug, info, warn or error (--log-level, log_level).
	// Default info.
	LogLevel string `yaml:"log_level"`
}

// DefaultDaemonConfig returns the defaults of every DaemonConfig field.
func DefaultDaemonConfig() DaemonConfig {
	return DaemonConfig{
		Listen:             "127.0.0.1:9090",
		HTTP:               "127.0.0.1:9091",
		GossipBind:         "127.0.0.1:7946",
		AppLease:           DefaultAppLease,
		MinDiskFree:        DefaultMinDiskFreeBytes,
		CheckpointInterval: 10 * time.Second,
		LogLevel:           "info",
	}
}

// flagSet binds the flags of the basalt-rss-master command to c.
func (c *DaemonConfig) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("basalt-rss-master", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Config, "config", c.Config, "YAML file with the settings below, in snake_case (flags override it)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "gRPC listen address")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "listen address for /metrics and /healthz")
	fs.StringVar(&c.GossipBind, "gossip-bind", c.GossipBind, "gossip (memberlist) address, TCP and UDP")
	fs.StringVar(&c.GossipJoin, "gossip-join", c.GossipJoin, "comma-separated gossip addresses to join (optional)")
	fs.DurationVar(&c.AppLease, "app-lease", c.AppLease, "how long an application stays registered without a heartbeat")
	fs.Uint64Var(&c.MinDiskFree, "min-disk-free", c.MinDiskFree, "bytes of free disk below which a worker takes no new partitions (0: the default)")
	fs.Uint64Var(&c.RaftID, "raft-id", c.RaftID, "raft host ID of this master; 0: one master, state in memory only")
	fs.StringVar(&c.RaftPeers, "raft-peers", c.RaftPeers, "every master as ID=grpc-address, comma-separated (with --raft-id)")
	fs.StringVar(&c.Data, "data", c.Data, "directory for the raft log and state checkpoint (with --raft-id)")
	fs.DurationVar(&c.CheckpointInterval, "checkpoint-interval", c.CheckpointInterval, "how often a replicated master checkpoints its state")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	return fs
}

// shutdownTimeout bounds the graceful stop of the gRPC server; calls still
// running after it are cut.
const shutdownTimeout = 10 * time.Second

// Daemon is a running basalt-rss-master: the Server behind a gRPC server,
// its gossip node, and the HTTP endpoint for /metrics and /healthz.
type Daemon struct {
	log    *slog.Logger
	srv    *Server
	gs     *grpc.Server
	lis    net.Listener
	http   *daemon.HTTP
	node   *gossip.Node
	rep    *replication // nil: not replicated
	conns  *connPool
	cancel context.CancelFunc
}

// StartDaemon parses args (flags, and the --config YAML file), starts
// listening and joins the gossip cluster (in the background); Run
// serves. Logs go to stderr.
func StartDaemon(args []string, stderr io.Writer) (*Daemon, error) {
	dc := DefaultDaemonConfig()
	if err := daemon.ParseFlags(dc.flagSet(stderr), args, &dc); err != nil {
		return nil, err
	}
	log, err := daemon.NewLogger(stderr, dc.LogLevel)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, conns: newConnPool()}
	if err := d.start(dc); err != nil {
		return nil, errors.Join(err, d.close())
	}
	return d, nil
}

// start opens the gRPC listener, the gossip node, the Server and the
// HTTP endpoint, in that order; on error the caller closes what opened.
func (d *Daemon) start(dc DaemonConfig) error {
	lis, err := net.Listen("tcp", dc.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", dc.Listen, err)
	}
	d.lis = lis
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	meta := gossip.Meta{ID: "master@" + lis.Addr().String(), Addr: lis.Addr().String(), Role: gossip.RoleMaster}
	d.node, err = gossip.Start(ctx, gossip.Config{
		BindAddr: dc.GossipBind, Join: masterconn.Split(dc.GossipJoin), Meta: func() gossip.Meta { return meta },
		Logger: d.log.With("component", "gossip"),
	})
	if err != nil {
		return err
	}
	cfg := DefaultConfig()
	cfg.Members, cfg.Dialer, cfg.Logger, cfg.AppLease = d.node.Members, d.conns.dial, d.log, dc.AppLease
	cfg.Placement.MinDiskFreeBytes = dc.MinDiskFree
	var grpcOpts []grpc.ServerOption
	collectors := []prometheus.Collector{}
	health := func() error { return d.srv.Health() }
	if dc.RaftID == 0 {
		d.srv, err = New(cfg)
	} else {
		if d.rep, err = d.openReplication(dc, cfg.Placement); err != nil {
			return err
		}
		grpcOpts, collectors = d.rep.serverOptions(), d.rep.collectors()
		health = func() error { return errors.Join(d.srv.Health(), d.rep.health()) }
		d.srv, err = NewReplicated(cfg, d.rep.rep)
	}
	if err != nil {
		return err
	}
	reg, err := daemon.NewRegistry(append(collectors, d.srv.Collectors()...)...)
	if err != nil {
		return err
	}
	if d.http, err = daemon.ServeHTTP(dc.HTTP, reg, health); err != nil {
		return err
	}
	d.gs = grpc.NewServer(grpcOpts...)
	rsspb.RegisterMasterServer(d.gs, d.srv)
	if d.rep != nil {
		d.rep.register(d.gs)
	}
	return nil
}

// openReplication opens the raft side of a replicated master.
func (d *Daemon) openReplication(dc DaemonConfig, placement PlacementConfig) (*replication, error) {
	peers, err := ParsePeers(dc.RaftPeers)
	if err != nil {
		return nil, err
	}
	if dc.CheckpointInterval <= 0 {
		return nil, fmt.Errorf("%w: --checkpoint-interval must be positive", ErrInvalidConfig)
	}
	return openReplication(replicationConfig{
		ID: dc.RaftID, Peers: peers, Dir: dc.Data, FS: vfs.Default, Placement: placement,
		Logger: d.log.With("component", "raft"), CheckpointInterval: dc.CheckpointInterval,
	})
}

// Addr returns the gRPC address the daemon listens on.
func (d *Daemon) Addr() string { return d.lis.Addr().String() }

// HTTPAddr returns the address serving /metrics and /healthz.
func (d *Daemon) HTTPAddr() string { return d.http.Addr }

// GossipAddr returns the daemon's gossip address, for workers to join.
func (d *Daemon) GossipAddr() string { return d.node.Addr() }

// Run serves until ctx is done, then shuts down: a graceful gRPC stop
// (bounded by 10 s), leaving the gossip cluster, the HTTP endpoint, the
// Server and the worker connections. It returns nil after a clean
// shutdown, or the error that stopped serving.
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("rss master serving", "grpc", d.Addr(), "http", d.HTTPAddr(), "gossip", d.GossipAddr())
	served := make(chan error, 1)
	go func() { served <- d.gs.Serve(d.lis) }()
	var err error
	select {
	case <-ctx.Done():
		d.log.Info("rss master shutting down")
	case err = <-served:
		err = fmt.Errorf("serving gRPC: %w", err)
	}
	d.stopGRPC()
	err = errors.Join(err, d.close())
	d.log.Info("rss master stopped", "err", err)
	return err
}

// stopGRPC stops the gRPC server gracefully, then forcibly after
// shutdownTimeout.
func (d *Daemon) stopGRPC() { daemon.StopGRPC(d.gs, shutdownTimeout, d.log) }

// close releases whatever start opened, in reverse order, except the
// gRPC server.
func (d *Daemon) close() error {
	var errs []error
	if d.http != nil {
		errs = append(errs, d.http.Close())
	}
	if d.srv != nil {
		errs = append(errs, d.srv.Close())
	}
	if d.rep != nil {
		errs = append(errs, d.rep.close())
	}
	if d.node != nil {
		errs = append(errs, d.node.Close())
	}
	if d.cancel != nil {
		d.cancel()
	}
	if d.gs == nil && d.lis != nil {
		errs = append(errs, d.lis.Close())
	}
	return errors.Join(append(errs, d.conns.close())...)
}

// RunDaemon is the basalt-rss-master command: it parses args, serves
// until ctx is done and shuts down cleanly, returning nil then. --help
// prints the flags to stderr and returns nil.
func RunDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	return daemon.Main(ctx, func() (*Daemon, error) { return StartDaemon(args, stderr) })
}

// connPool is the daemon's Dialer: one gRPC client connection per worker
// address, made on first use and closed with the pool.
type connPool struct {
	mu struct {
		sync.Mutex
		conns map[string]*grpc.ClientConn
	}
}

func newConnPool() *connPool {
	p := &connPool{}
	p.mu.conns = make(map[string]*grpc.ClientConn)
	return p
}

// dial returns a client of the worker at addr (connecting lazily).
func (p *connPool) dial(addr string) (rsspb.WorkerClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.mu.conns[addr]; ok {
		return rsspb.NewWorkerClient(cc), nil
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing worker %s: %w", addr, err)
	}
	p.mu.conns[addr] = cc
	return rsspb.NewWorkerClient(cc), nil
}

// close closes every connection.
func (p *connPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for addr, cc := range p.mu.conns {
		errs = append(errs, cc.Close())
		delete(p.mu.conns, addr)
	}
	return errors.Join(errs...)
}
