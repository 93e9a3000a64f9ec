package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"basalt/rss/rsspb"
)

// TestShuffleWorkerDecommission: a shuffle is pushed and committed on
// three workers, and another one registered; worker 0 is decommissioned
// with `basalt rss worker decommission`. A shuffle registered afterwards
// places nothing on it; the one registered before but written afterwards
// has its pushes to worker 0 refused, so the writers revive those
// partitions elsewhere; every shuffle reads exactly (the first one partly
// from worker 0, where it is primary). Then worker 1 gets SIGTERM: it
// decommissions too and waits. Once the application ends and the master
// deletes its data, both exit with status 0, worker 0 by itself.
func TestShuffleWorkerDecommission(t *testing.T) {
	c := startRSSWith(t, 3, nil, func(i int) []string {
		if i == 1 {
			return []string{"--shutdown-deadline", "1m"}
		}
		return nil
	})
	const appID = "decom"
	a := c.app(t, appID)
	mc := appMasterClient(t, c, appID, a.Token())
	ctx := t.Context()
	w0, w0Addr := c.workers[0], flagOf(c.workers[0], "--listen")

	first := job{maps: 8, partitions: 12, recordsPerMap: 500}
	if err := a.RegisterShuffle(ctx, 1, first.maps, first.partitions); err != nil {
		t.Fatal(err)
	}
	first.runMaps(t, a, 1, 4)
	if err := a.CommitShuffle(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := countOn(t, mc, 1, "worker0", true); n == 0 {
		t.Fatal("worker 0 is primary of no partition of the first shuffle: nothing to serve from it")
	}
	late := job{maps: 4, partitions: 12, recordsPerMap: 500}
	if err := a.RegisterShuffle(ctx, 3, late.maps, late.partitions); err != nil {
		t.Fatal(err)
	}
	placedOn0 := countOn(t, mc, 3, "worker0", false)
	if placedOn0 == 0 {
		t.Fatal("the shuffle registered before the decommission has no copy on worker 0")
	}

	stdout, stderr, err := basaltCLI("rss", "worker", "decommission", "--worker", w0Addr, "-o", "json")
	if err != nil {
		t.Fatalf("basalt rss worker decommission: %v\nstderr:\n%s", err, stderr)
	}
	var resp rsspb.DecommissionResponse
	if err := protojson.Unmarshal([]byte(stdout), &resp); err != nil {
		t.Fatalf("output %q is not a DecommissionResponse: %v", stdout, err)
	}
	if !resp.GetDecommissioning() || !slices.Equal(resp.GetApplications(), []string{appID}) || resp.GetPartitionFiles() == 0 {
		t.Fatalf("decommission response %v, want decommissioning with the files of %s", &resp, appID)
	}
	if !strings.Contains(stderr, "decommissioning RSS worker "+w0Addr) {
		t.Fatalf("stderr %q lacks the progress line", stderr)
	}
	c.waitDecommissioning("worker0")
	if v, err := w0.metric("basalt_rss_worker_decommissioning"); err != nil || v != 1 {
		t.Fatalf("decommissioning gauge of worker 0: %v, %v; want 1", v, err)
	}

	second := job{maps: 8, partitions: 12, recordsPerMap: 500}
	if err := a.RegisterShuffle(ctx, 2, second.maps, second.partitions); err != nil {
		t.Fatal(err)
	}
	second.runMaps(t, a, 2, 4)
	if err := a.CommitShuffle(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := countOn(t, mc, 2, "worker0", false); n != 0 {
		t.Fatalf("the shuffle registered after the decommission has %d copies on worker 0, want none", n)
	}
	late.runMaps(t, a, 3, 4)
	if err := a.CommitShuffle(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if n := countOn(t, mc, 3, "worker0", false); n != placedOn0 {
		t.Fatalf("the shuffle written after the decommission has %d copies on worker 0, want only the %d placed before", n, placedOn0)
	}
	if st, err := mc.GetShuffle(ctx, &rsspb.GetShuffleRequest{ShuffleId: 3}); err != nil || len(st.GetLocations()) == late.partitions {
		t.Fatalf("shuffle 3 locations %v (%v): want partitions revived off worker 0", st.GetLocations(), err)
	}

	late.checkOutput(t, a, 3, 4)
	second.checkOutput(t, a, 2, 4)
	first.checkOutput(t, a, 1, 4)
	if v, err := w0.metric("basalt_rss_worker_fetched_bytes_total"); err != nil || v == 0 {
		t.Fatalf("worker 0 served %v bytes (%v), want the first shuffle's partitions it is primary of", v, err)
	}

	w1 := c.workers[1]
	w1.mu.Lock()
	exited1 := w1.done
	w1.mu.Unlock()
	stopped1 := make(chan struct{})
	go func() { defer close(stopped1); w1.stop() }() // SIGTERM; stop checks the exit status is 0
	c.waitDecommissioning("worker1")
	select {
	case <-exited1:
		t.Fatal("worker 1 stopped on SIGTERM while it held application data")
	default:
	}
	if err := a.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	w0.waitExit(t, 20*time.Second)
	select {
	case <-stopped1:
	case <-time.After(25 * time.Second):
		t.Fatal("worker 1 did not stop after its application ended")
	}
}

// appMasterClient returns a master client that authenticates as the
// application id with its token.
func appMasterClient(t *testing.T, c *rssCluster, id, token string) rsspb.MasterClient {
	t.Helper()
	conn, err := grpc.NewClient(c.masterRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "basalt-rss-app", id, "basalt-rss-token", token)
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return rsspb.NewMasterClient(conn)
}

// countOn returns how many locations (every epoch) of the shuffle have
// worker id as primary, or, unless primaryOnly, as primary or replica.
func countOn(t *testing.T, mc rsspb.MasterClient, shuffle int32, id string, primaryOnly bool) int {
	t.Helper()
	st, err := mc.GetShuffle(t.Context(), &rsspb.GetShuffleRequest{ShuffleId: shuffle})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range st.GetLocations() {
		if l.GetPrimary().GetId() == id || !primaryOnly && l.GetReplica().GetId() == id {
			n++
		}
	}
	return n
}

// basaltCLI runs the basalt CLI binary and returns its stdout and stderr.
func basaltCLI(args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(binDir, "basalt"), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// flagOf returns the value given to flag on p's command line.
func flagOf(p *proc, flag string) string {
	i := slices.Index(p.args, flag)
	if i < 0 || i+1 >= len(p.args) {
		p.t.Fatalf("%s has no %s flag", p.name, flag)
	}
	return p.args[i+1]
}

// waitDecommissioning waits until the master's Status shows worker id
// decommissioning (it learns it by gossip).
func (c *rssCluster) waitDecommissioning(id string) {
	waitFor(c.t, 20*time.Second, id+" decommissioning at the master", func() error {
		conn, err := grpc.NewClient(c.masterRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := rsspb.NewMasterClient(conn).Status(ctx, &rsspb.StatusRequest{})
		if err != nil {
			return err
		}
		for _, w := range st.GetWorkers() {
			if w.GetWorker().GetId() == id && w.GetDecommissioning() {
				return nil
			}
		}
		return fmt.Errorf("workers %v", st.GetWorkers())
	})
}

// waitExit waits until p exits by itself and checks its status is 0.
func (p *proc) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit by itself within %v", p.name, timeout)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited with status %d, want 0", p.name, code)
	}
}
