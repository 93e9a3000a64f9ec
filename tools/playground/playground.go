package playground

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"basalt/chunkserver"
	"basalt/client"
	"basalt/mds"
	"basalt/mds/mdspb"
	"basalt/nbd"
	"basalt/nbd/gateway"
	rssmaster "basalt/rss/master"
)

// Config configures a playground.
type Config struct {
	// DataDir keeps everything (mds/, cs1..cs3/, rss-worker1/,
	// rss-worker2/). Default ./basalt-data.
	DataDir string
	// MDSAddr is the MDS gRPC address. Default 127.0.0.1:6700.
	MDSAddr string
	// NBDAddr is where volumes are exported over NBD. Default
	// 127.0.0.1:10809 (the NBD port).
	NBDAddr string
	// DemoVolume is created on first start. Default "demo".
	DemoVolume string
	// DemoSize in bytes. Default 10 GiB (thin: nothing is allocated).
	DemoSize uint64
	// ChunkserverBasePort: chunkserver i listens on 127.0.0.1:BasePort+i.
	// Default 6800; negative picks free ports (tests).
	ChunkserverBasePort int
	// PublicHost, when set, makes the MDS and the chunkservers listen on
	// every interface and advertise this host instead of 127.0.0.1, so
	// that VMs and other machines can reach the cluster (for qemu's user
	// networking, 10.0.2.2 with the host also answering to it). MDSAddr's
	// and the chunkservers' ports are kept; ChunkserverBasePort must not
	// be negative. The remote shuffle service stays on loopback: its
	// daemons have no advertise address separate from the one they listen
	// on (a worker listening on every interface would advertise the
	// hostname). Default empty: loopback only.
	PublicHost string
	// RSSMasterAddr is the gRPC address of the remote shuffle service's
	// master, always on loopback (see PublicHost). Default
	// 127.0.0.1:9090, the default of `basalt rss --master`.
	RSSMasterAddr string
	// RSSWorkerBasePort: RSS worker i (1, 2) serves gRPC on
	// 127.0.0.1:RSSWorkerBasePort+i. Default 9100; negative picks free
	// ports (tests).
	RSSWorkerBasePort int
	// RSSGossipBasePort: the RSS master gossips (TCP and UDP) on
	// 127.0.0.1:RSSGossipBasePort and RSS worker i on
	// 127.0.0.1:RSSGossipBasePort+i. Default 7946; negative picks free
	// ports (tests).
	RSSGossipBasePort int
	// Logger for the daemons. Default: warnings to stderr.
	Logger *slog.Logger
}

// DefaultRSSMasterAddr is the default of Config.RSSMasterAddr.
const DefaultRSSMasterAddr = "127.0.0.1:9090"

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		DataDir: "basalt-data", MDSAddr: "127.0.0.1:6700", NBDAddr: "127.0.0.1:10809",
		DemoVolume: "demo", DemoSize: 10 << 30, ChunkserverBasePort: 6800,
		RSSMasterAddr: DefaultRSSMasterAddr, RSSWorkerBasePort: 9100, RSSGossipBasePort: 7946,
		Logger: slog.Default(),
	}
}

// Run starts the MDS, three chunkservers (zones zone1..zone3), the NBD
// server, and the remote shuffle service's master and two workers in this
// process, creates the demo volume if missing, waits until the RSS master
// sees both workers, prints what to try next to out, and serves until ctx
// ends; then it stops everything cleanly, in order. Starting again with
// the same DataDir reuses the block data (the RSS master keeps its state
// in memory only).
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	p := &playground{cfg: cfg, log: cfg.Logger}
	// The daemons outlive ctx, so that stop can end them one after the
	// other; ctx bounds the start.
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancel
	defer p.stop()
	if err := p.start(ctx, life); err != nil {
		return err
	}
	p.printNextSteps(out)
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping the playground...")
	return nil
}

type playground struct {
	cfg    Config
	log    *slog.Logger
	mds    *mds.Daemon
	css    []*chunkserver.Server
	nbd    net.Listener
	done   sync.WaitGroup
	cancel context.CancelFunc // ends the daemons' life: stops the MDS

	nbdDone   sync.WaitGroup
	nbdCancel context.CancelFunc // stops the NBD server

	rssMaster        *rssmaster.Daemon
	rssWorkerAddrs   []string
	rssMasterDone    sync.WaitGroup
	rssMasterCancel  context.CancelFunc
	rssWorkersDone   sync.WaitGroup
	rssWorkersCancel context.CancelFunc
}

// ErrPublicHostPorts is returned when PublicHost is set with free
// (negative) chunkserver ports, which could not be advertised.
var ErrPublicHostPorts = errors.New("playground: a public host needs fixed chunkserver ports")

// mdsAddr is the address clients and chunkservers dial for the MDS.
func (p *playground) mdsAddr() string {
	if p.cfg.PublicHost == "" {
		return p.cfg.MDSAddr
	}
	_, port, _ := net.SplitHostPort(p.cfg.MDSAddr)
	return net.JoinHostPort(p.cfg.PublicHost, port)
}

// listenAddr is addr, or its port on every interface with a public host.
func (p *playground) listenAddr(addr string) string {
	if p.cfg.PublicHost == "" {
		return addr
	}
	_, port, _ := net.SplitHostPort(addr)
	return net.JoinHostPort("0.0.0.0", port)
}

// start starts every daemon to run until life ends, waiting for them
// at most until ctx ends.
func (p *playground) start(ctx, life context.Context) error {
	if p.cfg.PublicHost != "" && p.cfg.ChunkserverBasePort < 0 {
		return ErrPublicHostPorts
	}
	if err := p.startMDS(life); err != nil {
		return err
	}
	if err := p.startChunkservers(ctx); err != nil {
		return err
	}
	if err := p.startRSS(life); err != nil {
		return err
	}
	if err := p.waitHealthy(ctx); err != nil {
		return err
	}
	if err := p.ensureDemo(ctx); err != nil {
		return err
	}
	if err := p.startNBD(life); err != nil {
		return err
	}
	return p.waitRSSWorkers(ctx)
}

func (p *playground) startMDS(ctx context.Context) error {
	args := []string{"--data", filepath.Join(p.cfg.DataDir, "mds"), "--listen", p.listenAddr(p.cfg.MDSAddr), "--http", "127.0.0.1:0", "--log-level", "warn"}
	d, err := mds.StartDaemon(args, io.Discard)
	if err != nil {
		return fmt.Errorf("starting the MDS: %w", err)
	}
	p.mds = d
	p.done.Go(func() {
		if err := d.Run(ctx); err != nil {
			p.log.Error("MDS stopped", "err", err)
		}
	})
	return nil
}

func (p *playground) startChunkservers(ctx context.Context) error {
	for i := 1; i <= 3; i++ {
		cfg := chunkserver.DefaultConfig()
		cfg.Dir = filepath.Join(p.cfg.DataDir, fmt.Sprintf("cs%d", i))
		cfg.Listen = "127.0.0.1:0"
		if p.cfg.ChunkserverBasePort >= 0 {
			cfg.Listen = fmt.Sprintf("127.0.0.1:%d", p.cfg.ChunkserverBasePort+i)
		}
		if p.cfg.PublicHost != "" {
			port := fmt.Sprint(p.cfg.ChunkserverBasePort + i)
			cfg.Listen, cfg.Advertise = net.JoinHostPort("0.0.0.0", port), net.JoinHostPort(p.cfg.PublicHost, port)
		}
		cfg.HTTP, cfg.MDS, cfg.Zone, cfg.Logger = "", p.mdsAddr(), fmt.Sprintf("zone%d", i), p.log
		s, err := chunkserver.Start(ctx, cfg)
		if err != nil {
			return fmt.Errorf("starting chunkserver %d: %w", i, err)
		}
		p.css = append(p.css, s)
	}
	return nil
}

// mdsCall runs fn against the MDS with a deadline.
func (p *playground) mdsCall(ctx context.Context, fn func(context.Context, mdspb.MDSClient) error) error {
	conn, err := grpc.NewClient(p.mdsAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return fn(ctx, mdspb.NewMDSClient(conn))
}

// waitHealthy waits until every copyset has a leader and all its members.
func (p *playground) waitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		var st *mdspb.ClusterStatusResponse
		err := p.mdsCall(ctx, func(ctx context.Context, c mdspb.MDSClient) error {
			var err error
			st, err = c.ClusterStatus(ctx, &mdspb.ClusterStatusRequest{})
			return err
		})
		if err == nil && st.GetCopysets() > 0 && st.GetCopysetsHealthy() == st.GetCopysets() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the copysets to elect leaders: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (p *playground) ensureDemo(ctx context.Context) error {
	return p.mdsCall(ctx, func(ctx context.Context, c mdspb.MDSClient) error {
		_, err := c.CreateVolume(ctx, &mdspb.CreateVolumeRequest{Name: p.cfg.DemoVolume, Size: p.cfg.DemoSize, Owner: "playground"})
		if status.Code(err) == codes.AlreadyExists {
			return nil
		}
		return err
	})
}

// startNBD serves every volume over NBD through the gateway's Exports: a
// volume is opened as its writer while a client is connected.
func (p *playground) startNBD(ctx context.Context) error {
	opts := client.DefaultOptions()
	opts.MDSAddrs, opts.ClientName, opts.Logger = []string{p.mdsAddr()}, "basalt-playground", p.log
	ex, err := gateway.New(gateway.Config{Client: opts})
	if err != nil {
		return err
	}
	cfg := nbd.DefaultConfig()
	cfg.Exports, cfg.Logger = ex, p.log
	srv, err := nbd.NewServer(cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", p.cfg.NBDAddr)
	if err != nil {
		return fmt.Errorf("NBD listener: %w", err)
	}
	p.nbd = lis
	ctx, p.nbdCancel = context.WithCancel(ctx)
	p.nbdDone.Go(func() { _ = srv.Serve(ctx, lis) })
	return nil
}

// stop stops the RSS workers, then the RSS master, then the NBD server
// (its connections end and release their volumes), then the
// chunkservers, then the MDS.
func (p *playground) stop() {
	p.stopRSS()
	if p.nbdCancel != nil {
		p.nbdCancel()
		p.nbdDone.Wait()
	}
	for _, s := range p.css {
		s.Stop()
	}
	p.cancel()
	p.done.Wait()
}

func (p *playground) printNextSteps(out io.Writer) {
	uri := fmt.Sprintf("nbd://%s/%s", p.cfg.NBDAddr, p.cfg.DemoVolume)
	fmt.Fprintf(out, `Basalt playground is running: MDS %s, 3 chunkservers (zones 1-3), NBD %s,
RSS master %s with %d workers
Data is kept under %s; Ctrl-C stops everything, starting again reuses it.

The %s volume (%d GiB, thin) is exported as %s. Try:

  nbdinfo %s
  qemu-io -f raw %s -c 'write -P 0xab 0 1M' -c 'read -P 0xab 0 1M'
  mkdir -p mnt && nbdfuse mnt/disk %s &      # the volume as a file
  go run ./cmd/basalt cluster status
  sudo go run ./cmd/basalt nbd attach %s                # /dev/nbdN (needs the nbd kernel module)
  go run ./cmd/basalt volume create data --size 20GiB   # exported as nbd://%s/data

The remote shuffle service's master is %s, its workers %s:

  %s
`, p.mdsAddr(), p.cfg.NBDAddr, p.rssMasterAddr(), rssWorkers, p.cfg.DataDir, p.cfg.DemoVolume, p.cfg.DemoSize>>30, uri, uri, uri, uri,
		p.cfg.DemoVolume, p.cfg.NBDAddr, p.rssMasterAddr(), strings.Join(p.rssWorkerAddrs, " and "), p.rssStatusCommand())
}
