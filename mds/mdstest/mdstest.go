package mdstest

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/mds"
	"basalt/mds/mdspb"
)

// Clock is a manual clock; it moves only when Advance is called. It is
// safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock set to 2026-01-01 00:00 UTC.
func NewClock() *Clock {
	return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time; pass it as mds.Config.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Config returns a Config for tests: an in-memory filesystem, clock's time,
// a fixed seed, no logs, 64 KiB chunks in 1 MiB segments (16 chunks a
// segment) and 10 copysets per chunkserver. Reuse its FS and Dir to
// restart an MDS on the same store.
func Config(clock *Clock) mds.Config {
	cfg := mds.DefaultConfig()
	cfg.FS, cfg.Dir = vfs.NewMem(), "/mds"
	cfg.Clock, cfg.Seed = clock.Now, 1
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.ChunkSize, cfg.SegmentSize = 64<<10, 1<<20
	cfg.CopysetsPerChunkserver = 10
	return cfg
}

// MDS is an mds.Server served over gRPC on 127.0.0.1, and a client of it.
type MDS struct {
	// Server is the server itself, for calls that bypass gRPC.
	Server *mds.Server
	// Client is connected to Addr.
	Client mdspb.MDSClient
	// Addr is the gRPC address.
	Addr string

	gs   *grpc.Server
	conn *grpc.ClientConn
	once sync.Once
}

// Start opens an mds.Server with cfg and serves it on 127.0.0.1:0. It
// fails the test on error and stops the MDS in tb's cleanup.
func Start(tb testing.TB, cfg mds.Config) *MDS {
	tb.Helper()
	srv, err := mds.New(cfg)
	if err != nil {
		tb.Fatalf("starting the MDS: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = srv.Close()
		tb.Fatalf("listening: %v", err)
	}
	m := &MDS{Server: srv, Addr: lis.Addr().String(), gs: grpc.NewServer()}
	mdspb.RegisterMDSServer(m.gs, srv)
	go func() { _ = m.gs.Serve(lis) }()
	m.conn, err = grpc.NewClient(m.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		m.Stop()
		tb.Fatalf("dialing the MDS: %v", err)
	}
	m.Client = mdspb.NewMDSClient(m.conn)
	tb.Cleanup(m.Stop)
	return m
}

// Stop closes the client, stops the gRPC server and closes the Server. It
// is idempotent; a test restarting the MDS calls it before Start.
func (m *MDS) Stop() {
	m.once.Do(func() {
		if m.conn != nil {
			_ = m.conn.Close()
		}
		m.gs.Stop()
		_ = m.Server.Close()
	})
}
