package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"basalt/tools/cli"
	"basalt/tools/raftdemo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runDemo runs `basalt raft-demo -o json` and returns its progress lines.
func runDemo(t *testing.T, args ...string) []raftdemo.Progress {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cli.Run(ctx, append([]string{"raft-demo", "-o", "json"}, args...), &out, &errOut); err != nil {
		t.Fatalf("raft-demo: %v\nstderr:\n%s", err, errOut.String())
	}
	var ps []raftdemo.Progress
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var p raftdemo.Progress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("output line %q is not JSON: %v", sc.Text(), err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		t.Fatal("raft-demo printed no progress")
	}
	return ps
}

// TestRaftDemoRecoversFromDisk runs the demo twice on one data directory:
// the second run must find every entry the first one acknowledged.
func TestRaftDemoRecoversFromDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	args := []string{"--data", dir, "--groups", "4", "--writers", "8", "--duration", "2s",
		"--base-port", "17201", "--metrics-addr", ""}
	first := runDemo(t, args...)
	last := first[len(first)-1]
	if last.Commits == 0 {
		t.Fatalf("first run committed nothing: %+v", last)
	}
	second := runDemo(t, args...)
	if got := second[0].Recovered; got < last.Commits {
		t.Fatalf("second run recovered %d entries, first run acknowledged %d", got, last.Commits)
	}
}

func TestRejectsUnknownOutput(t *testing.T) {
	var out bytes.Buffer
	err := cli.Run(context.Background(), []string{"raft-demo", "-o", "yaml"}, &out, &out)
	if !errors.Is(err, cli.ErrBadOutput) {
		t.Fatalf("got %v, want ErrBadOutput", err)
	}
}
