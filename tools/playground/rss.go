package playground

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	rssmaster "basalt/rss/master"
	"basalt/rss/rsspb"
	rssworker "basalt/rss/worker"
)

// rssWorkers is how many RSS workers the playground runs.
const rssWorkers = 2

// errRSSWorkersMissing is the condition waitRSSWorkers waits out.
var errRSSWorkersMissing = errors.New("playground: RSS workers missing")

// rssPort is 127.0.0.1:base+i, or a free port when base is negative.
func rssPort(base, i int) string {
	if base < 0 {
		return "127.0.0.1:0"
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(base+i))
}

// startRSS starts the RSS master, then the workers joining its gossip,
// each running until ctx ends or stopRSS. The daemons log warnings only,
// to nowhere, like the MDS: Run's error is what the playground logs.
func (p *playground) startRSS(ctx context.Context) error {
	args := []string{"--listen", p.cfg.RSSMasterAddr, "--http", "127.0.0.1:0",
		"--gossip-bind", rssPort(p.cfg.RSSGossipBasePort, 0), "--log-level", "warn"}
	m, err := rssmaster.StartDaemon(args, io.Discard)
	if err != nil {
		return fmt.Errorf("starting the RSS master: %w", err)
	}
	p.rssMaster = m
	var mctx context.Context
	mctx, p.rssMasterCancel = context.WithCancel(ctx)
	p.rssMasterDone.Go(func() {
		if err := m.Run(mctx); err != nil {
			p.log.Error("RSS master stopped", "err", err)
		}
	})
	var wctx context.Context
	wctx, p.rssWorkersCancel = context.WithCancel(ctx)
	for i := 1; i <= rssWorkers; i++ {
		if err := p.startRSSWorker(wctx, i, m.GossipAddr()); err != nil {
			return err
		}
	}
	return nil
}

// startRSSWorker starts RSS worker i (id rss-worker<i>, data under
// DataDir/rss-worker<i>) joining the master's gossip at join.
func (p *playground) startRSSWorker(ctx context.Context, i int, join string) error {
	name := fmt.Sprintf("rss-worker%d", i)
	args := []string{"--listen", rssPort(p.cfg.RSSWorkerBasePort, i), "--http", "127.0.0.1:0",
		"--dirs", filepath.Join(p.cfg.DataDir, name), "--id", name,
		"--gossip-bind", rssPort(p.cfg.RSSGossipBasePort, i), "--gossip-join", join, "--log-level", "warn",
		// The whole playground stops at once: waiting for the applications'
		// data to be deleted (a decommission) would only delay it.
		"--shutdown-deadline", "0"}
	w, err := rssworker.StartDaemon(args, io.Discard)
	if err != nil {
		return fmt.Errorf("starting RSS worker %d: %w", i, err)
	}
	p.rssWorkerAddrs = append(p.rssWorkerAddrs, w.Addr())
	p.rssWorkersDone.Go(func() {
		if err := w.Run(ctx); err != nil {
			p.log.Error("RSS worker stopped", "worker", name, "err", err)
		}
	})
	return nil
}

// rssMasterAddr is the address the RSS master listens on.
func (p *playground) rssMasterAddr() string { return p.rssMaster.Addr() }

// rssStatusCommand is the CLI command showing the RSS master's status.
func (p *playground) rssStatusCommand() string {
	cmd := "go run ./cmd/basalt rss status"
	if addr := p.rssMasterAddr(); addr != DefaultRSSMasterAddr {
		cmd += " --master " + addr
	}
	return cmd
}

// waitRSSWorkers waits until the RSS master's Status lists every worker
// (they join its gossip in the background).
func (p *playground) waitRSSWorkers(ctx context.Context) error {
	conn, err := grpc.NewClient(p.rssMasterAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	c := rsspb.NewMasterClient(conn)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		last := rssWorkersUp(ctx, c)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the RSS master to see %d workers: %w", rssWorkers, errors.Join(ctx.Err(), last))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rssWorkersUp returns nil when the master's Status lists every worker.
func rssWorkersUp(ctx context.Context, c rsspb.MasterClient) error {
	st, err := c.Status(ctx, &rsspb.StatusRequest{})
	if err != nil {
		return err
	}
	if n := len(st.GetWorkers()); n < rssWorkers {
		return fmt.Errorf("%w: the master sees %d", errRSSWorkersMissing, n)
	}
	return nil
}

// stopRSS stops the RSS workers (they leave the gossip and finish their
// pushes), then the RSS master.
func (p *playground) stopRSS() {
	if p.rssWorkersCancel != nil {
		p.rssWorkersCancel()
		p.rssWorkersDone.Wait()
	}
	if p.rssMasterCancel != nil {
		p.rssMasterCancel()
		p.rssMasterDone.Wait()
	}
}
