package master_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"basalt/rss/gossip"
	"basalt/rss/master"
	"basalt/rss/master/mastertest"
	"basalt/rss/rsspb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait for background work.
const waitTimeout = 10 * time.Second

// t0 is the start of every manual clock.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is a manual clock, safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// members is a static, changeable worker list for Config.Members.
type members struct {
	mu    sync.Mutex
	metas []gossip.Meta
}

func (m *members) get() []gossip.Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]gossip.Meta(nil), m.metas...)
}

func (m *members) set(metas []gossip.Meta) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.metas = metas
}

// cluster is a Server with static workers and fake worker clients,
// served over gRPC on loopback.
type cluster struct {
	srv     *master.Server
	client  rsspb.MasterClient
	workers *mastertest.Workers
	members *members
	clock   *clock
}

// newCluster starts a cluster of n workers; adjust edits the Config
// before New.
func newCluster(t *testing.T, n int, adjust func(*master.Config)) *cluster {
	t.Helper()
	c := &cluster{workers: mastertest.NewWorkers(), members: &members{metas: mastertest.WorkerMetas(n)}, clock: newClock()}
	cfg := master.DefaultConfig()
	cfg.Members, cfg.Dialer, cfg.Clock, cfg.Seed = c.members.get, c.workers.Dial, c.clock.Now, 1
	cfg.Logger = discardLogger()
	cfg.DeleteBackoff = time.Millisecond
	if adjust != nil {
		adjust(&cfg)
	}
	srv, err := master.New(cfg)
	if err != nil {
		t.Fatalf("master.New: %v", err)
	}
	c.srv = srv
	t.Cleanup(func() { noErr(t, srv.Close()) })
	c.client = serve(t, srv)
	return c
}

// serve serves srv on a loopback port and returns a client of it.
func serve(t *testing.T, srv rsspb.MasterServer) rsspb.MasterClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err)
	gs := grpc.NewServer()
	rsspb.RegisterMasterServer(gs, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	noErr(t, err)
	t.Cleanup(func() {
		noErr(t, cc.Close())
		gs.Stop()
		<-done
	})
	return rsspb.NewMasterClient(cc)
}

// app is a registered application: contexts carrying its credentials.
type app struct {
	id, token string
}

// ctx returns a context with a's credentials.
func (a app) ctx(t *testing.T) context.Context {
	return withCreds(t.Context(), a.id, a.token)
}

// withCreds returns ctx carrying an application id and token (each
// omitted when empty).
func withCreds(ctx context.Context, id, token string) context.Context {
	if id != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, master.MetadataApp, id)
	}
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, master.MetadataToken, token)
	}
	return ctx
}

// register registers application id.
func (c *cluster) register(t *testing.T, id string) app {
	t.Helper()
	resp, err := c.client.RegisterApplication(t.Context(), &rsspb.RegisterApplicationRequest{AppId: id})
	noErr(t, err)
	return app{id: id, token: resp.GetToken()}
}

// registerShuffle registers shuffle id with maps maps and parts
// partitions, replicated.
func (c *cluster) registerShuffle(t *testing.T, a app, id, maps, parts int32) *rsspb.ShuffleLayout {
	t.Helper()
	l, err := c.client.RegisterShuffle(a.ctx(t), &rsspb.RegisterShuffleRequest{ShuffleId: id, NumMaps: maps, NumPartitions: parts})
	noErr(t, err)
	return l
}

// workerAddrs returns the addresses of every primary and replica of every
// location of st.
func workerAddrs(st *rsspb.ShuffleState) map[string]bool {
	out := map[string]bool{}
	for _, l := range st.GetLocations() {
		out[l.GetPrimary().GetAddr()] = true
		if r := l.GetReplica(); r != nil {
			out[r.GetAddr()] = true
		}
	}
	return out
}

// wantCode fails unless err is a status with code.
func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: err = %v, want code %v", what, err, code)
	}
}

// wantErr fails unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
