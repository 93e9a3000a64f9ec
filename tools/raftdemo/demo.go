package raftdemo

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"basalt/raft"
	"basalt/raft/grpctransport"
)

// Config configures a demo run.
type Config struct {
	// DataDir holds one directory per host. Default ./basalt-data/raft-demo.
	DataDir string
	// Groups is the number of raft groups. Default 16.
	Groups int
	// BasePort: host i (1..3) serves raft on 127.0.0.1:BasePort+i-1.
	// Default 7101.
	BasePort int
	// MetricsAddr serves /metrics and /healthz; empty disables. Default
	// 127.0.0.1:9464.
	MetricsAddr string
	// Writers is the number of concurrent proposers. Default 32.
	Writers int
	// PayloadBytes is the size of each proposal. Default 4096.
	PayloadBytes int
	// Chaos, if positive, stops a random host every Chaos and restarts it
	// Chaos/2 later. Zero: no faults.
	Chaos time.Duration
	// Duration stops the demo after this long; zero runs until ctx ends.
	Duration time.Duration
	// Interval between progress reports. Default 1s.
	Interval time.Duration
	// Logger for the hosts. Default: warnings and errors to stderr.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		DataDir: filepath.Join("basalt-data", "raft-demo"), Groups: 16, BasePort: 7101,
		MetricsAddr: "127.0.0.1:9464", Writers: 32, PayloadBytes: 4096, Interval: time.Second,
		Logger: slog.Default(),
	}
}

// Progress is one report of a running demo.
type Progress struct {
	Elapsed   time.Duration  `json:"elapsed_ns"`
	Commits   uint64         `json:"commits"`        // acknowledged this run
	Rate      float64        `json:"commits_per_s"`  // over the last interval
	Applied   uint64         `json:"applied_total"`  // entries applied on host 1, including earlier runs
	Recovered uint64         `json:"recovered"`      // entries found on disk at start
	Leaders   map[string]int `json:"leaders"`        // host -> groups it leads
	Down      []uint64       `json:"down,omitempty"` // hosts stopped by chaos
	Errors    uint64         `json:"errors"`         // failed proposals (retried)
	Event     string         `json:"event,omitempty"`
}

const hosts = 3

// Run starts the cluster and the load and calls report every Interval
// until ctx ends or Duration passes; then it stops everything cleanly.
func Run(ctx context.Context, cfg Config, report func(Progress)) error {
	d := &demo{cfg: cfg, report: report, nodes: map[uint64]*node{}}
	for id := uint64(1); id <= hosts; id++ {
		if err := d.start(id); err != nil {
			d.stopAll()
			return err
		}
	}
	defer d.stopAll()
	if err := d.createGroups(ctx); err != nil {
		return err
	}
	if err := d.waitLeaders(ctx, 30*time.Second); err != nil {
		return err
	}
	d.recovered = d.applied()
	stopMetrics, err := d.serveMetrics()
	if err != nil {
		return err
	}
	defer stopMetrics()
	return d.drive(ctx)
}

type demo struct {
	cfg       Config
	report    func(Progress)
	recovered uint64
	commits   atomic.Uint64
	errors    atomic.Uint64

	mu    sync.Mutex
	nodes map[uint64]*node // running hosts
}

type node struct {
	host     *raft.Host
	tr       *grpctransport.Transport
	srv      *grpc.Server
	counters sync.Map // group -> *Counter
}

func (d *demo) addr(id uint64) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.cfg.BasePort+int(id)-1))
}

func (d *demo) start(id uint64) error {
	lis, err := net.Listen("tcp", d.addr(id))
	if err != nil {
		return fmt.Errorf("host %d: %w", id, err)
	}
	res := grpctransport.NewStaticResolver(nil)
	for p := uint64(1); p <= hosts; p++ {
		res.Set(p, d.addr(p))
	}
	tcfg := grpctransport.DefaultConfig()
	tcfg.HostID, tcfg.Resolver = id, res
	tr, err := grpctransport.New(tcfg)
	if err != nil {
		lis.Close()
		return err
	}
	n := &node{tr: tr}
	if n.host, err = raft.NewHost(d.hostConfig(id, n)); err != nil {
		lis.Close()
		_ = tr.Close()
		return err
	}
	tr.SetHandler(n.host)
	n.srv = grpc.NewServer(tr.ServerOptions()...)
	tr.Register(n.srv)
	go func() { _ = n.srv.Serve(lis) }()
	d.mu.Lock()
	d.nodes[id] = n
	d.mu.Unlock()
	return nil
}

func (d *demo) hostConfig(id uint64, n *node) raft.Config {
	dir := filepath.Join(d.cfg.DataDir, fmt.Sprintf("host-%d", id))
	cfg := raft.DefaultConfig()
	cfg.HostID, cfg.Dir, cfg.Transport, cfg.Logger = id, dir, n.tr, d.cfg.Logger
	cfg.Factory = func(group uint64) (raft.StateMachine, error) {
		c := NewCounter(filepath.Join(dir, fmt.Sprintf("counter-%d.json", group)))
		n.counters.Store(group, c)
		return c, nil
	}
	return cfg
}

func (d *demo) stop(id uint64) {
	d.mu.Lock()
	n := d.nodes[id]
	delete(d.nodes, id)
	d.mu.Unlock()
	if n == nil {
		return
	}
	n.srv.Stop()
	_ = n.tr.Close()
	if err := n.host.Stop(); err != nil {
		d.cfg.Logger.Error("stopping host", "host", id, "err", err)
	}
}

func (d *demo) stopAll() {
	for id := uint64(1); id <= hosts; id++ {
		d.stop(id)
	}
}

func (d *demo) node(id uint64) *node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[id]
}

// createGroups creates the groups that do not exist yet (a restarted demo
// finds them on disk).
func (d *demo) createGroups(ctx context.Context) error {
	voters := []uint64{1, 2, 3}
	for id := uint64(1); id <= hosts; id++ {
		h := d.node(id).host
		have := map[uint64]bool{}
		for _, g := range h.Groups() {
			have[g] = true
		}
		for g := uint64(1); g <= uint64(d.cfg.Groups); g++ {
			if have[g] {
				continue
			}
			if err := h.CreateGroup(ctx, g, voters); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitLeaders waits until every group has a leader.
func (d *demo) waitLeaders(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for g := uint64(1); g <= uint64(d.cfg.Groups); g++ {
		for d.leader(g) == 0 {
			if !sleep(ctx, 10*time.Millisecond) {
				return fmt.Errorf("waiting for a leader of group %d: %w", g, ctx.Err())
			}
		}
	}
	return nil
}

// applied sums the entries host 1's counters have applied.
func (d *demo) applied() uint64 {
	n := d.node(1)
	if n == nil {
		return 0
	}
	var total uint64
	n.counters.Range(func(_, v any) bool {
		total += v.(*Counter).Entries()
		return true
	})
	return total
}

func (d *demo) drive(ctx context.Context) error {
	if d.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.cfg.Duration)
		defer cancel()
	}
	var wg sync.WaitGroup
	for w := range d.cfg.Writers {
		wg.Go(func() { d.write(ctx, w) })
	}
	wg.Go(func() { d.checkpointLoop(ctx) })
	events := make(chan string, 4)
	if d.cfg.Chaos > 0 {
		wg.Go(func() { d.chaos(ctx, events) })
	}
	d.reportLoop(ctx, events)
	wg.Wait()
	return nil
}

// write proposes to the groups in turn, following leaders.
func (d *demo) write(ctx context.Context, w int) {
	payload := make([]byte, d.cfg.PayloadBytes)
	_, _ = crand.Read(payload)
	for i := 0; ctx.Err() == nil; i++ {
		g := uint64((w+i*d.cfg.Writers)%d.cfg.Groups) + 1
		if err := d.propose(ctx, g, payload); err != nil {
			if ctx.Err() != nil {
				return
			}
			d.errors.Add(1)
			sleep(ctx, 20*time.Millisecond)
			continue
		}
		d.commits.Add(1)
	}
}

func (d *demo) propose(ctx context.Context, g uint64, payload []byte) error {
	leader := d.leader(g)
	n := d.node(leader)
	if n == nil {
		return fmt.Errorf("group %d has no running leader", g)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := n.host.Propose(pctx, g, payload)
	return err
}

// leader returns the leader of g as seen by any running host.
func (d *demo) leader(g uint64) uint64 {
	for id := uint64(1); id <= hosts; id++ {
		if n := d.node(id); n != nil {
			if l, _, err := n.host.Leader(g); err == nil && l != 0 && d.node(l) != nil {
				return l
			}
		}
	}
	return 0
}

// checkpointLoop checkpoints every counter and lets the hosts truncate
// their logs behind it, as a real state machine does.
func (d *demo) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for id := uint64(1); id <= hosts; id++ {
			if n := d.node(id); n != nil {
				d.checkpoint(ctx, n)
			}
		}
	}
}

func (d *demo) checkpoint(ctx context.Context, n *node) {
	n.counters.Range(func(k, v any) bool {
		idx, err := v.(*Counter).Checkpoint()
		if err == nil {
			err = n.host.Compact(ctx, k.(uint64), idx)
		}
		if err != nil && !errors.Is(err, raft.ErrStopped) && ctx.Err() == nil {
			d.cfg.Logger.Warn("checkpoint failed", "group", k, "err", err)
		}
		return true
	})
}

// chaos stops a random host every Chaos and restarts it Chaos/2 later.
func (d *demo) chaos(ctx context.Context, events chan<- string) {
	for sleep(ctx, d.cfg.Chaos) {
		id := uint64(rand.IntN(hosts)) + 1
		d.stop(id)
		events <- fmt.Sprintf("stopped host %d", id)
		if !sleep(ctx, d.cfg.Chaos/2) {
			return
		}
		if err := d.start(id); err != nil {
			events <- fmt.Sprintf("restarting host %d failed: %v", id, err)
			continue
		}
		events <- fmt.Sprintf("restarted host %d", id)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (d *demo) reportLoop(ctx context.Context, events <-chan string) {
	start, last, lastCommits := time.Now(), time.Now(), uint64(0)
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		var event string
		select {
		case <-ctx.Done():
			d.report(d.progress(start, &last, &lastCommits, "stopping"))
			return
		case event = <-events:
		case <-t.C:
		}
		d.report(d.progress(start, &last, &lastCommits, event))
	}
}

func (d *demo) progress(start time.Time, last *time.Time, lastCommits *uint64, event string) Progress {
	now, commits := time.Now(), d.commits.Load()
	p := Progress{
		Elapsed: now.Sub(start), Commits: commits, Applied: d.applied(), Recovered: d.recovered,
		Rate:    float64(commits-*lastCommits) / now.Sub(*last).Seconds(),
		Leaders: map[string]int{}, Errors: d.errors.Load(), Event: event,
	}
	*last, *lastCommits = now, commits
	for g := uint64(1); g <= uint64(d.cfg.Groups); g++ {
		if l := d.leader(g); l != 0 {
			p.Leaders[strconv.FormatUint(l, 10)]++
		}
	}
	for id := uint64(1); id <= hosts; id++ {
		if d.node(id) == nil {
			p.Down = append(p.Down, id)
		}
	}
	return p
}

// serveMetrics serves every host's metrics (labelled host="N") and a
// health check; it returns a function that stops the server.
func (d *demo) serveMetrics() (func(), error) {
	if d.cfg.MetricsAddr == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	for id := uint64(1); id <= hosts; id++ {
		wrapped := prometheus.WrapRegistererWith(prometheus.Labels{"host": strconv.FormatUint(id, 10)}, reg)
		wrapped.MustRegister(liveCollector{d, id})
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	lis, err := net.Listen("tcp", d.cfg.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return func() { _ = srv.Close() }, nil
}

// liveCollector collects the metrics of whichever instance of host id is
// running now (chaos replaces hosts). It is an unchecked collector.
type liveCollector struct {
	d  *demo
	id uint64
}

func (liveCollector) Describe(chan<- *prometheus.Desc) {}

func (l liveCollector) Collect(ch chan<- prometheus.Metric) {
	n := l.d.node(l.id)
	if n == nil {
		return
	}
	for _, c := range append(n.host.Collectors(), n.tr.Collectors()...) {
		c.Collect(ch)
	}
}
