package worker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"basalt/internal/testwait"
	"basalt/rss/gossip"
	"basalt/rss/rsspb"
	"basalt/rss/worker"
)

// TestDecommission: decommissioning refuses new Push and Replicate
// streams with Unavailable, lets a push already in flight send more and
// finish, keeps Commit and Fetch working, reports what the worker holds,
// and WaitDecommissioned returns once the application's data is deleted.
func TestDecommission(t *testing.T) {
	cfg := dirsConfig(t, 1)
	cfg.FlushInterval = 300 * time.Millisecond // the batches are in flight when the decommission starts
	n := startNode(t, cfg)
	ctx := appCtx(t.Context(), testApp)
	expired, cancelExpired := context.WithCancel(t.Context())
	cancelExpired()
	if err := n.w.WaitDecommissioned(expired); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitDecommissioned of an empty worker not decommissioning: %v, want it to wait", err)
	}
	committed := []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 500), newBatch(1, 0, 0, 1, 0, 0, 500)}
	mustPush(t, ctx, n.client, nil, committed)
	commit(t, ctx, n.client, 1)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := n.client.Push(sctx)
	if err != nil {
		t.Fatal(err)
	}
	inFlight := []*rsspb.Batch{newBatch(2, 0, 0, 0, 0, 0, 1000), newBatch(2, 0, 0, 0, 0, 1, 1000), newBatch(2, 0, 0, 0, 0, 2, 1000)}
	for _, b := range inFlight[:2] {
		if err := st.Send(&rsspb.PushRequest{Batches: []*rsspb.Batch{b}}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, waitTimeout, "two batches received", func() bool { return n.w.MemoryUsedBytes() == 2*(32+1000) })
	if v := metric(t, n.w, "basalt_rss_worker_decommissioning"); v != 0 {
		t.Fatalf("decommissioning gauge %v before the decommission", v)
	}

	resp, err := n.client.Decommission(t.Context(), &rsspb.DecommissionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetDecommissioning() || resp.GetPushesInFlight() != 1 || !slices.Equal(resp.GetApplications(), []string{testApp}) || resp.GetPartitionFiles() != 2 {
		t.Fatalf("Decommission = %v, want decommissioning, 1 push in flight, %s with 2 partition files", resp, testApp)
	}
	if v := metric(t, n.w, "basalt_rss_worker_decommissioning"); v != 1 {
		t.Fatalf("decommissioning gauge %v, want 1", v)
	}
	if err := n.w.Health(); err != nil {
		t.Fatalf("health while decommissioning: %v", err)
	}
	res := push(ctx, n.client, nil, []*rsspb.Batch{newBatch(3, 0, 0, 0, 0, 0, 10)})
	wantCode(t, "new push while decommissioning", res.err, codes.Unavailable, "worker is decommissioning")
	rst, err := n.client.Replicate(ctx)
	if err == nil {
		_, err = rst.Recv()
	}
	wantCode(t, "new replicate stream while decommissioning", err, codes.Unavailable, "worker is decommissioning")

	// The stream in flight still takes a batch and ends cleanly.
	if err := st.Send(&rsspb.PushRequest{Batches: inFlight[2:]}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acked := int64(0)
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("push in flight at the decommission: %v (acked %d)", err, acked)
		}
		acked = resp.GetAcked()
	}
	if acked != 3 {
		t.Fatalf("acked %d of the 3 batches of the push in flight", acked)
	}

	commit(t, ctx, n.client, 2)
	sameBatches(t, "committed before", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 1}), committed)
	sameBatches(t, "pushed in flight", mustFetch(t, ctx, n.client, &rsspb.FetchRequest{ShuffleId: 2}), inFlight)

	again := n.w.StartDecommission()
	if !again.Decommissioning || again.PushesInFlight != 0 || again.PartitionFiles != 2 || again.Empty() {
		t.Fatalf("state after the push ended: %+v", again)
	}
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if err := n.w.WaitDecommissioned(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitDecommissioned with data left: %v, want DeadlineExceeded", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- n.w.WaitDecommissioned(t.Context()) }()
	if _, err := n.client.DeleteShuffle(t.Context(), &rsspb.DeleteShuffleRequest{AppId: testApp, ShuffleId: -1}); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("WaitDecommissioned after the application was deleted: %v", err)
	}
	if s := n.w.DecommissionState(); !s.Empty() || len(s.Applications) != 0 {
		t.Fatalf("state after the delete: %+v", s)
	}
}

// gossipMaster joins the daemon's gossip cluster as a master and returns
// a function that waits until the daemon's worker meta satisfies want.
func gossipMaster(t *testing.T, d *worker.Daemon) func(what string, want func(gossip.Meta) error) {
	t.Helper()
	master, err := gossip.Start(t.Context(), gossip.Config{BindAddr: "127.0.0.1:0", Join: []string{d.GossipAddr()},
		Meta: func() gossip.Meta { return gossip.Meta{ID: "master", Role: gossip.RoleMaster} }, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Close() })
	return func(what string, want func(gossip.Meta) error) {
		t.Helper()
		testwait.For(t, waitTimeout, what, func() error {
			ms := master.Members()
			i := slices.IndexFunc(ms, func(m gossip.Meta) bool { return m.ID == d.ID() })
			if i < 0 {
				return fmt.Errorf("worker not among %v", ms)
			}
			return want(ms[i])
		})
	}
}

func decommissioning(want bool) func(gossip.Meta) error {
	return func(m gossip.Meta) error {
		if m.Decommissioning != want {
			return fmt.Errorf("meta %+v", m)
		}
		return nil
	}
}

// daemonWithData starts a daemon gossiping as w1 with extra args and
// one committed partition of testApp.
func daemonWithData(t *testing.T, args ...string) (*worker.Daemon, func() error, <-chan struct{}, rsspb.WorkerClient) {
	t.Helper()
	d, stop, exited := runDaemon(t, append([]string{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--dirs", filepath.Join(t.TempDir(), "data"), "--gossip-bind", "127.0.0.1:0", "--id", "w1"}, args...)...)
	client := dialDaemon(t, d.Addr())
	ctx := appCtx(t.Context(), testApp)
	mustPush(t, ctx, client, nil, []*rsspb.Batch{newBatch(1, 0, 0, 0, 0, 0, 100)})
	commit(t, ctx, client, 1)
	return d, stop, exited, client
}

// TestDaemonDecommissionExitsWhenEmpty: after the Decommission RPC the
// daemon gossips decommissioning and exports the gauge, keeps serving its
// committed data, and Run returns nil by itself once the master deletes
// the application's data.
func TestDaemonDecommissionExitsWhenEmpty(t *testing.T) {
	d, _, exited, client := daemonWithData(t)
	seen := gossipMaster(t, d)
	seen("the master sees the worker up", decommissioning(false))
	if _, err := client.Decommission(t.Context(), &rsspb.DecommissionRequest{}); err != nil {
		t.Fatal(err)
	}
	seen("the master sees the worker decommissioning", decommissioning(true))
	if _, body := httpGet(t, "http://"+d.HTTPAddr()+"/metrics"); !strings.Contains(body, "basalt_rss_worker_decommissioning 1") {
		t.Fatalf("metrics lack the decommissioning gauge at 1:\n%s", body)
	}
	ctx := appCtx(t.Context(), testApp)
	if got := mustFetch(t, ctx, client, &rsspb.FetchRequest{ShuffleId: 1}); len(got) != 1 {
		t.Fatalf("fetched %d batches while decommissioning, want 1", len(got))
	}
	select {
	case <-exited:
		t.Fatal("the daemon exited while it still held application data")
	default:
	}
	if _, err := client.DeleteShuffle(t.Context(), &rsspb.DeleteShuffleRequest{AppId: testApp, ShuffleId: -1}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		t.Fatal("the daemon did not exit once its data was deleted")
	}
}

// TestDaemonShutdownDecommissions: on shutdown the daemon first
// decommissions and waits for its applications' data to be deleted (new
// pushes refused meanwhile), then stops; with data left it stops at
// --shutdown-deadline.
func TestDaemonShutdownDecommissions(t *testing.T) {
	t.Run("data deleted", func(t *testing.T) {
		d, stop, exited, client := daemonWithData(t, "--shutdown-deadline", "1m")
		seen := gossipMaster(t, d)
		seen("the master sees the worker up", decommissioning(false))
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		seen("the master sees the worker decommissioning", decommissioning(true))
		res := push(appCtx(t.Context(), testApp), client, nil, []*rsspb.Batch{newBatch(2, 0, 0, 0, 0, 0, 10)})
		wantCode(t, "push during the shutdown", res.err, codes.Unavailable, "worker is decommissioning")
		select {
		case <-exited:
			t.Fatal("the daemon stopped before its application's data was deleted")
		default:
		}
		if _, err := client.DeleteShuffle(t.Context(), &rsspb.DeleteShuffleRequest{AppId: testApp, ShuffleId: -1}); err != nil {
			t.Fatal(err)
		}
		if err := <-stopped; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		_, stop, _, _ := daemonWithData(t, "--shutdown-deadline", "300ms")
		start := time.Now()
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Fatalf("stopped after %v with data left, want it to wait the 300ms deadline", took)
		}
	})
}
