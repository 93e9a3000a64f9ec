package daemon_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"basalt/internal/daemon"
)

type cfg struct {
	Listen string `yaml:"listen"`
	Zone   string `yaml:"zone"`
	Config string `yaml:"-"`
}

func parse(t *testing.T, yamlText string, args ...string) (cfg, error) {
	t.Helper()
	c := cfg{Listen: "default:1", Zone: "z0"}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", c.Listen, "")
	fs.StringVar(&c.Zone, "zone", c.Zone, "")
	fs.StringVar(&c.Config, "config", "", "")
	if yamlText != "" {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(yamlText), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", p)
	}
	return c, daemon.ParseFlags(fs, args, &c)
}

func TestFlagsOverrideYAML(t *testing.T) {
	c, err := parse(t, "listen: file:2\nzone: z9\n", "--zone", "flag-zone")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "file:2" || c.Zone != "flag-zone" {
		t.Fatalf("got %+v, want listen from the file and zone from the flag", c)
	}
	if c, _ := parse(t, ""); c.Listen != "default:1" {
		t.Fatalf("defaults not kept without a file: %+v", c)
	}
}

func TestUnknownYAMLKeyIsAnError(t *testing.T) {
	if _, err := parse(t, "listn: typo\n"); !errors.Is(err, daemon.ErrConfig) {
		t.Fatalf("got %v, want ErrConfig", err)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	reg, err := daemon.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	var unhealthy error
	h, err := daemon.ServeHTTP("127.0.0.1:0", reg, func() error { return unhealthy })
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + h.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
	unhealthy = errors.New("disk gone")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "disk gone") {
		t.Fatalf("unhealthy healthz: %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics: %d", code)
	}
}

type fakeRunner struct{ ran bool }

func (f *fakeRunner) Run(context.Context) error { f.ran = true; return nil }

// TestMainHelpAndErrors runs a started daemon, treats --help as success and passes
// start errors through.
func TestMainHelpAndErrors(t *testing.T) {
	r := &fakeRunner{}
	if err := daemon.Main(context.Background(), func() (*fakeRunner, error) { return r, nil }); err != nil || !r.ran {
		t.Fatalf("Main = %v, ran %v", err, r.ran)
	}
	if err := daemon.Main(context.Background(), func() (*fakeRunner, error) { return nil, flag.ErrHelp }); err != nil {
		t.Fatalf("Main with --help = %v, want nil", err)
	}
	if err := daemon.Main(context.Background(), func() (*fakeRunner, error) { return nil, daemon.ErrConfig }); !errors.Is(err, daemon.ErrConfig) {
		t.Fatalf("Main with a bad config = %v", err)
	}
}

// stuckServer's GracefulStop returns only after Stop.
type stuckServer struct{ stop chan struct{} }

func (s *stuckServer) GracefulStop() { <-s.stop }
func (s *stuckServer) Stop()         { close(s.stop) }

// TestStopGRPCForcesAfterTimeout: a graceful stop that hangs is forced.
func TestStopGRPCForcesAfterTimeout(t *testing.T) {
	s := &stuckServer{stop: make(chan struct{})}
	start := time.Now()
	daemon.StopGRPC(s, 50*time.Millisecond, nil)
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("StopGRPC returned after %v", d)
	}
}
