package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"basalt/internal/testnet"
	rssclient "basalt/rss/client"
	"basalt/rss/rsspb"
	"basalt/tools/cli"
)

// syncBuffer is a bytes.Buffer safe for the command's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startPlayground runs `basalt playground` until the returned stop is
// called, and waits until it prints its next steps. Chunkservers, RSS
// workers and gossip get free ports.
func startPlayground(t *testing.T, data, mdsAddr, nbdAddr, rssAddr string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, []string{"playground", "--data", data, "--mds-addr", mdsAddr,
			"--nbd-addr", nbdAddr, "--chunkserver-base-port", "-1", "--rss-master-addr", rssAddr,
			"--rss-worker-base-port", "-1", "--rss-gossip-base-port", "-1"}, out, errOut)
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "basalt rss status --master "+rssAddr) {
		select {
		case err := <-done:
			t.Fatalf("playground exited: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("playground did not come up\nstderr:\n%s", errOut)
		}
	}
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("playground returned %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("playground did not stop within 60s of Ctrl-C")
		}
	}
}

func qemuIO(t *testing.T, uri string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "raw", uri}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	if out, err := exec.Command("/usr/bin/qemu-io", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
}

// TestPlaygroundServesNBDAndShufflesAndKeepsData starts the playground,
// writes the demo volume through qemu-io over NBD, checks with `basalt rss
// workers` that the RSS master sees both workers and runs a shuffle
// through them with the Go client, stops the playground (Ctrl-C), starts
// it again on the same data and reads the volume back.
func TestPlaygroundServesNBDAndShufflesAndKeepsData(t *testing.T) {
	data := filepath.Join(t.TempDir(), "basalt-data")
	mdsAddr, nbdAddr, rssAddr := testnet.FreeAddr(t), testnet.FreeAddr(t), testnet.FreeAddr(t)
	uri := "nbd://" + nbdAddr + "/demo"
	stop := startPlayground(t, data, mdsAddr, nbdAddr, rssAddr)
	out, err := exec.Command("/usr/bin/nbdinfo", uri).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10737418240") {
		t.Fatalf("nbdinfo %s: %v\n%s", uri, err, out)
	}
	qemuIO(t, uri, "write -P 0xab 0 1M", "write -P 0xcd 5G 64k", "read -P 0xab 0 1M")
	// Block status: the two written segments are data, the rest holes.
	out, err = exec.Command("/usr/bin/nbdinfo", "--map", uri).CombinedOutput()
	if err != nil {
		t.Fatalf("nbdinfo --map: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "hole,zero"); got != 2 {
		t.Fatalf("nbdinfo --map shows %d hole runs, want 2 (before and after the 5 GiB segment):\n%s", got, out)
	}
	checkRSSWorkers(t, rssAddr)
	checkShuffle(t, rssAddr)
	stop()
	stop = startPlayground(t, data, mdsAddr, nbdAddr, rssAddr)
	defer stop()
	qemuIO(t, uri, "read -P 0xab 0 1M", "read -P 0xcd 5G 64k", "read -P 0 2G 1M")
}

// checkRSSWorkers runs `basalt rss workers -o json` against the master
// at addr and checks that it lists the playground's two workers.
func checkRSSWorkers(t *testing.T, addr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := cli.Run(t.Context(), []string{"rss", "workers", "--master", addr, "-o", "json"}, &out, &errOut); err != nil {
		t.Fatalf("basalt rss workers: %v\nstderr:\n%s", err, errOut.String())
	}
	var st rsspb.StatusResponse
	if err := protojson.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatalf("basalt rss workers -o json printed %q: %v", out.String(), err)
	}
	var ids []string
	for _, w := range st.GetWorkers() {
		ids = append(ids, w.GetWorker().GetId())
	}
	slices.Sort(ids)
	if want := []string{"rss-worker1", "rss-worker2"}; !slices.Equal(ids, want) {
		t.Fatalf("basalt rss workers lists %q, want %q:\n%s", ids, want, out.String())
	}
}

// checkShuffle registers an application and a shuffle of 2 maps and 3
// partitions with the RSS master at addr, writes records through the
// workers, commits and reads every partition back exactly.
func checkShuffle(t *testing.T, addr string) {
	t.Helper()
	const maps, partitions = 2, 3
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	app, err := rssclient.Register(ctx, rssclient.Config{MasterAddr: addr, AppID: "playground-test", RetryDeadline: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := app.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := app.RegisterShuffle(ctx, 1, maps, partitions); err != nil {
		t.Fatal(err)
	}
	want := make([][]string, partitions)
	for m := range maps {
		w, err := app.NewWriter(ctx, 1, m, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			p := (m + i) % partitions
			rec := fmt.Sprintf("map %d record %d", m, i)
			if err := w.Write(p, []byte(rec)); err != nil {
				t.Fatalf("writing map %d record %d: %v", m, i, err)
			}
			want[p] = append(want[p], rec)
		}
		if end, err := w.Close(ctx); err != nil || !end.Won {
			t.Fatalf("closing map %d: %+v, %v", m, end, err)
		}
	}
	if err := app.CommitShuffle(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for p := range partitions {
		if got := readPartition(ctx, t, app, 1, p); !slices.Equal(got, want[p]) {
			t.Errorf("partition %d: read %d records %q, want %d %q", p, len(got), got, len(want[p]), want[p])
		}
	}
}

// readPartition reads every record of partition p of shuffle.
func readPartition(ctx context.Context, t *testing.T, app *rssclient.App, shuffle, p int) []string {
	t.Helper()
	r, err := app.NewReader(ctx, shuffle, p, 0, 0)
	if err != nil {
		t.Fatalf("opening partition %d: %v", p, err)
	}
	defer r.Close()
	var got []string
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("reading partition %d: %v", p, err)
		}
		got = append(got, string(rec))
	}
}
