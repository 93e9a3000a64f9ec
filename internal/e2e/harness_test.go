// Package e2e_test runs Basalt's daemons as separate OS processes on
// 127.0.0.1 and drives them the way a user does: the basalt CLI and the Go
// client library. Processes are killed with real signals.
package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/client"
	"basalt/internal/testnet"
	"basalt/internal/testwait"
	"basalt/mds/mdspb"
)

// binDir holds the daemons built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "basalt-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/basalt-mds", "./cmd/basalt-chunkserver", "./cmd/basalt-nbd", "./cmd/basalt-rss-master", "./cmd/basalt-rss-worker", "./cmd/basalt")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building daemons:", err)
		return 1
	}
	binDir = dir
	defer stopSharedSpark()
	return m.Run()
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// proc is one daemon process.
type proc struct {
	t    testing.TB
	name string
	args []string
	log  string
	http string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func (p *proc) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, p.name), p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	waitFor(p.t, 30*time.Second, p.name+" healthy", func() error {
		select {
		case <-done: // a bind error, a bad flag: say so now, with the log
			p.dumpLog()
			p.t.Fatalf("%s exited with status %d before it was healthy", p.name, cmd.ProcessState.ExitCode())
		default:
		}
		return p.healthy()
	})
}

func (p *proc) healthy() error {
	resp, err := http.Get("http://" + p.http + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz: %s", resp.Status)
	}
	return nil
}

// signal sends sig and waits for the process to exit.
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); sig == syscall.SIGTERM && code != 0 {
			p.t.Errorf("%s exited with status %d after SIGTERM, want 0", p.name, code)
		}
	case <-time.After(20 * time.Second):
		p.t.Errorf("%s did not exit within 20s of %v; killing it", p.name, sig)
		_ = cmd.Process.Kill()
		<-done
	}
}

func (p *proc) kill9() { p.signal(syscall.SIGKILL) }
func (p *proc) stop()  { p.signal(syscall.SIGTERM) }

func (p *proc) dumpLog() {
	b, _ := os.ReadFile(p.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	p.t.Logf("--- %s log (tail) ---\n%s", p.name, b)
}

// cluster is an MDS and three chunkservers in three zones.
type cluster struct {
	t      testing.TB
	dir    string
	mdsRPC string
	mds    *proc
	cs     []*proc
	// checkpoint is the chunkservers' --checkpoint-interval.
	checkpoint string
}

// Small chunks and segments keep the tests fast while still crossing
// chunk and segment boundaries.
const (
	chunkSize   = 1 << 20
	segmentSize = 4 << 20
)

func startCluster(t testing.TB) *cluster { return startClusterWith(t, "2s") }

// startClusterWith starts a cluster whose chunkservers checkpoint every
// checkpoint (a duration).
func startClusterWith(t testing.TB, checkpoint string) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), mdsRPC: testnet.FreeAddr(t), checkpoint: checkpoint}
	t.Cleanup(c.shutdown) // also shows the logs of a cluster that failed to start
	mdsHTTP := testnet.FreeAddr(t)
	c.mds = &proc{t: t, name: "basalt-mds", http: mdsHTTP, log: filepath.Join(c.dir, "mds.log"), args: []string{
		"--data", filepath.Join(c.dir, "mds"), "--listen", c.mdsRPC, "--http", mdsHTTP,
		"--chunk-size", fmt.Sprint(chunkSize), "--segment-size", fmt.Sprint(segmentSize),
		"--copysets-per-chunkserver", "8",
	}}
	c.mds.start()
	for i := 1; i <= 3; i++ {
		c.cs = append(c.cs, c.newChunkserver(i))
	}
	for _, p := range c.cs {
		p.start()
	}
	c.waitHealthy()
	return c
}

func (c *cluster) newChunkserver(i int) *proc {
	httpAddr := testnet.FreeAddr(c.t)
	return &proc{t: c.t, name: "basalt-chunkserver", http: httpAddr, log: filepath.Join(c.dir, fmt.Sprintf("cs%d.log", i)), args: []string{
		"--data", filepath.Join(c.dir, fmt.Sprintf("cs%d", i)), "--listen", testnet.FreeAddr(c.t), "--http", httpAddr,
		"--mds", c.mdsRPC, "--zone", fmt.Sprintf("zone%d", i), "--heartbeat-interval", "300ms",
		"--checkpoint-interval", c.checkpoint, "--pool-files", "4",
	}}
}

func (c *cluster) shutdown() {
	if c.t.Failed() {
		for _, p := range append([]*proc{c.mds}, c.cs...) {
			p.dumpLog()
		}
	}
	for _, p := range c.cs {
		p.stop()
	}
	c.mds.stop()
}

// status asks the MDS for the cluster status.
func (c *cluster) status() (*mdspb.ClusterStatusResponse, error) {
	var st *mdspb.ClusterStatusResponse
	err := c.mdsCall(func(ctx context.Context, m mdspb.MDSClient) error {
		var err error
		st, err = m.ClusterStatus(ctx, &mdspb.ClusterStatusRequest{})
		return err
	})
	return st, err
}

func (c *cluster) mdsCall(fn func(context.Context, mdspb.MDSClient) error) error {
	conn, err := grpc.NewClient(c.mdsRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return fn(ctx, mdspb.NewMDSClient(conn))
}

// waitHealthy waits until every copyset has a leader and all members up.
func (c *cluster) waitHealthy() {
	waitFor(c.t, 60*time.Second, "all copysets healthy", func() error {
		st, err := c.status()
		if err != nil {
			return err
		}
		if st.GetCopysets() == 0 || st.GetCopysetsHealthy() != st.GetCopysets() {
			return fmt.Errorf("%d of %d copysets healthy", st.GetCopysetsHealthy(), st.GetCopysets())
		}
		return nil
	})
}

// cli runs the basalt CLI against the cluster and returns its stdout.
func (c *cluster) cli(args ...string) (string, error) {
	out, errOut, err := c.run(args...)
	if err != nil {
		return out, fmt.Errorf("basalt %v: %w: %s", args, err, errOut)
	}
	return out, nil
}

// cliStderr runs the basalt CLI and returns what it printed on stderr.
func (c *cluster) cliStderr(args ...string) (string, error) {
	_, errOut, err := c.run(args...)
	return errOut, err
}

func (c *cluster) run(args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(binDir, "basalt"), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	testwait.For(t, timeout, what, cond)
}

// tryOpen opens a volume through the client library.
func (c *cluster) tryOpen(name string, writer bool) (*client.Volume, error) {
	opts := client.DefaultOptions()
	opts.MDSAddrs, opts.Writer = []string{c.mdsRPC}, writer
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return client.Open(ctx, opts, name)
}

func (c *cluster) open(t testing.TB, name string, writer bool) *client.Volume {
	t.Helper()
	v, err := c.tryOpen(name, writer)
	if err != nil {
		t.Fatalf("opening %s (writer %v): %v", name, writer, err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}
