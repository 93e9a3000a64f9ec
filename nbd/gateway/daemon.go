package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/client"
	"basalt/internal/daemon"
	"basalt/nbd"
)

// DaemonConfig is the configuration of the basalt-nbd process. Each field
// is a command-line flag and a YAML key of the --config file (flags given
// on the command line win over the file).
type DaemonConfig struct {
	// Config is the YAML file to load (--config); empty: none.
	Config string `yaml:"-"`
	// Listen is the NBD TCP address (--listen, listen). Default
	// 127.0.0.1:10809 (the NBD port); empty: no TCP listener.
	Listen string `yaml:"listen"`
	// Socket is the path of an NBD unix socket (--socket, socket), e.g.
	// /run/basalt/nbd.sock, for clients on the same host
	// (nbd+unix:///VOLUME?socket=PATH). Default empty: none. A stale socket
	// file left by a killed daemon is replaced.
	Socket string `yaml:"socket"`
	// HTTP is the address serving /metrics and /healthz (--http, http).
	// Default 127.0.0.1:10810.
	HTTP string `yaml:"http"`
	// MDS is the comma-separated list of MDS addresses (--mds, mds).
	// Default 127.0.0.1:6700.
	MDS string `yaml:"mds"`
	// ClientName identifies this gateway to the MDS as the volumes' writer
	// (--client-name, client_name). Default "<hostname>/nbd".
	ClientName string `yaml:"client_name"`
	// MaxRequestBytes is nbd.Config.MaxRequestBytes (--max-request-bytes,
	// max_request_bytes). Default 32 MiB.
	MaxRequestBytes uint32 `yaml:"max_request_bytes"`
	// MaxInFlight is nbd.Config.MaxInFlight per connection
	// (--max-in-flight, max_in_flight). Default 16.
	MaxInFlight int `yaml:"max_in_flight"`
	// LogLevel is debug, info, warn or error (--log-level, log_level).
	// Default info.
	LogLevel string `yaml:"log_level"`
}

// DefaultDaemonConfig returns the defaults of every DaemonConfig field.
func DefaultDaemonConfig() DaemonConfig {
	host, _ := os.Hostname()
	d := nbd.DefaultConfig()
	return DaemonConfig{
		Listen: "127.0.0.1:10809", HTTP: "127.0.0.1:10810", MDS: "127.0.0.1:6700",
		ClientName: host + "/nbd", MaxRequestBytes: d.MaxRequestBytes, MaxInFlight: d.MaxInFlight,
		LogLevel: "info",
	}
}

// flagSet binds the flags of the basalt-nbd command to c.
func (c *DaemonConfig) flagSet(stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("basalt-nbd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Config, "config", c.Config, "YAML file with the settings below, in snake_case (flags override it)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "NBD TCP listen address (empty: none)")
	fs.StringVar(&c.Socket, "socket", c.Socket, "NBD unix socket path (empty: none)")
	fs.StringVar(&c.HTTP, "http", c.HTTP, "listen address for /metrics and /healthz")
	fs.StringVar(&c.MDS, "mds", c.MDS, "comma-separated MDS addresses")
	fs.StringVar(&c.ClientName, "client-name", c.ClientName, "name this gateway gives the MDS as the volumes' writer")
	fs.Func("max-request-bytes", "largest NBD READ/WRITE payload in bytes (default 33554432)", func(s string) error {
		var n uint32
		_, err := fmt.Sscan(s, &n)
		c.MaxRequestBytes = n
		return err
	})
	fs.IntVar(&c.MaxInFlight, "max-in-flight", c.MaxInFlight, "requests served at once per connection")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error")
	return fs
}

// Daemon is a running basalt-nbd: an NBD server over Exports on a TCP
// and/or unix listener, and the HTTP endpoint for /metrics and /healthz.
type Daemon struct {
	log     *slog.Logger
	exports *Exports
	srv     *nbd.Server
	lis     []net.Listener
	http    *daemon.HTTP
	mds     []string
	metrics *metrics
}

// ErrNoListener is returned when both Listen and Socket are empty.
var ErrNoListener = errors.New("gateway: neither a TCP address nor a unix socket to listen on")

// StartDaemon parses args (flags, and the --config YAML file) and starts
// listening; Run serves. Logs go to stderr.
func StartDaemon(args []string, stderr io.Writer) (*Daemon, error) {
	dc := DefaultDaemonConfig()
	if err := daemon.ParseFlags(dc.flagSet(stderr), args, &dc); err != nil {
		return nil, err
	}
	if dc.Listen == "" && dc.Socket == "" {
		return nil, fmt.Errorf("%w: %w", daemon.ErrConfig, ErrNoListener)
	}
	log, err := daemon.NewLogger(stderr, dc.LogLevel)
	if err != nil {
		return nil, err
	}
	d := &Daemon{log: log, mds: SplitAddrs(dc.MDS)}
	if err := d.build(dc); err != nil {
		return nil, err
	}
	if err := d.listen(dc); err != nil {
		return nil, errors.Join(err, d.closeListeners())
	}
	return d, nil
}

// build creates the Exports and the NBD server.
func (d *Daemon) build(dc DaemonConfig) error {
	opts := client.DefaultOptions()
	opts.MDSAddrs, opts.ClientName, opts.Logger = d.mds, dc.ClientName, d.log
	ex, err := New(Config{Client: opts, Logger: d.log})
	if err != nil {
		return fmt.Errorf("%w: %w", daemon.ErrConfig, err)
	}
	d.exports = ex
	m := newMetrics(func() float64 { return float64(len(ex.Opened())) })
	cfg := nbd.DefaultConfig()
	cfg.Exports, cfg.Logger = meteredExports{Exports: ex, m: m}, d.log
	cfg.MaxRequestBytes, cfg.MaxInFlight = dc.MaxRequestBytes, dc.MaxInFlight
	if d.srv, err = nbd.NewServer(cfg); err != nil {
		return err
	}
	reg, err := daemon.NewRegistry(m.collectors()...)
	if err != nil {
		return err
	}
	d.http, err = daemon.ServeHTTP(dc.HTTP, reg, d.health)
	if err != nil {
		return err
	}
	d.metrics = m
	return nil
}

// listen opens the TCP and unix listeners.
func (d *Daemon) listen(dc DaemonConfig) error {
	if dc.Listen != "" {
		lis, err := net.Listen("tcp", dc.Listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", dc.Listen, err)
		}
		d.lis = append(d.lis, lis)
	}
	if dc.Socket != "" {
		lis, err := listenUnix(dc.Socket)
		if err != nil {
			return err
		}
		d.lis = append(d.lis, lis)
	}
	return nil
}

// listenUnix listens on a unix socket at path, replacing a stale socket
// file (one nobody accepts on) but never another kind of file.
func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listening on %s: %w", path, ErrSocketInUse)
		}
		_ = os.Remove(path)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return lis, nil
}

// ErrSocketInUse is returned when another process serves the unix socket.
var ErrSocketInUse = errors.New("gateway: unix socket already served by another process")

// Addrs returns the addresses the daemon serves NBD on (TCP first).
func (d *Daemon) Addrs() []string {
	out := make([]string, len(d.lis))
	for i, l := range d.lis {
		out[i] = l.Addr().String()
	}
	return out
}

// HTTPAddr returns the address serving /metrics and /healthz.
func (d *Daemon) HTTPAddr() string { return d.http.Addr }

// health reports whether an MDS answers (within 2 s).
func (d *Daemon) health() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := ListVolumes(ctx, d.mds)
	return err
}

// Run serves until ctx is done, then shuts down: the listeners and every
// connection close (each client's requests in flight finish first, and the
// volumes' writer leases are released), then the HTTP endpoint. It returns
// nil after a clean shutdown, or the error that stopped serving.
func (d *Daemon) Run(ctx context.Context) error {
	d.log.Info("nbd gateway serving", "nbd", strings.Join(d.Addrs(), ","), "http", d.HTTPAddr(), "mds", strings.Join(d.mds, ","))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(d.lis))
	var wg sync.WaitGroup
	for i, lis := range d.lis {
		wg.Go(func() {
			errs[i] = d.srv.Serve(ctx, countingListener{Listener: lis, m: d.metrics})
			cancel() // one listener failing stops the daemon
		})
	}
	wg.Wait()
	err := errors.Join(errors.Join(errs...), d.http.Close())
	d.log.Info("nbd gateway stopped", "err", err)
	return err
}

// closeListeners closes what StartDaemon opened when it fails half-way.
func (d *Daemon) closeListeners() error {
	var errs []error
	for _, l := range d.lis {
		errs = append(errs, l.Close())
	}
	if d.http != nil {
		errs = append(errs, d.http.Close())
	}
	return errors.Join(errs...)
}

// RunDaemon is the basalt-nbd command: it parses args, serves until ctx is
// done and shuts down cleanly, returning nil then. --help prints the flags
// to stderr and returns nil.
func RunDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	return daemon.Main(ctx, func() (*Daemon, error) { return StartDaemon(args, stderr) })
}

// SplitAddrs splits a comma-separated address list, dropping blanks.
func SplitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// dial returns a gRPC connection to addr (connected lazily).
func dial(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", addr, err)
	}
	return conn, nil
}
