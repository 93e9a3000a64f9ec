package daemon

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"gopkg.in/yaml.v3"
)

// ErrConfig wraps configuration errors (bad YAML, unknown keys, bad flags).
var ErrConfig = errors.New("daemon: bad configuration")

// ParseFlags parses args into fs, whose flags are bound to the fields of
// cfg (a pointer to a struct with yaml tags). If the flag named "config" is
// set, the YAML file it names is loaded into cfg first and the flags given
// on the command line then override it. Unknown YAML keys are errors.
func ParseFlags(fs *flag.FlagSet, args []string, cfg any) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	path := ""
	if f := fs.Lookup("config"); f != nil {
		path = f.Value.String()
	}
	if path == "" {
		return nil
	}
	if err := LoadYAML(path, cfg); err != nil {
		return err
	}
	return reapply(fs, args)
}

// reapply parses args again so explicitly given flags win over the file.
func reapply(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// LoadYAML decodes the YAML file at path into cfg, rejecting unknown keys.
func LoadYAML(path string, cfg any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w: reading %s: %w", ErrConfig, path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	return nil
}

// NewLogger returns a text logger at level ("debug", "info", "warn",
// "error"; empty means info).
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(cmpOr(level, "info")))); err != nil {
		return nil, fmt.Errorf("%w: log level %q", ErrConfig, level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors and cs.
func NewRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs = append(cs, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return reg, nil
}

// HTTP serves /metrics and /healthz; Close stops it.
type HTTP struct {
	srv  *http.Server
	Addr string // the address it listens on
}

// ServeHTTP listens on addr and serves reg at /metrics and health at
// /healthz (200 "ok" when health returns nil, 503 with the error
// otherwise).
func ServeHTTP(addr string, reg *prometheus.Registry, health func() error) (*HTTP, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := health(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	h := &HTTP{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, Addr: lis.Addr().String()}
	go func() { _ = h.srv.Serve(lis) }()
	return h, nil
}

// Close stops the server, waiting up to 5 s for requests in progress.
func (h *HTTP) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return h.srv.Shutdown(ctx)
}

// GRPCServer is the part of *grpc.Server that StopGRPC uses.
type GRPCServer interface {
	GracefulStop()
	Stop()
}

// StopGRPC stops s gracefully (waiting for calls in flight), then forcibly
// after timeout, logging that to log when it is not nil.
func StopGRPC(s GRPCServer, timeout time.Duration, log *slog.Logger) {
	stopped := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(timeout):
		if log != nil {
			log.Warn("graceful stop timed out; closing connections")
		}
		s.Stop()
		<-stopped
	}
}

// Runner is a started daemon.
type Runner interface {
	Run(ctx context.Context) error
}

// Main is the body of every daemon command: start (which parses flags and
// opens listeners), then Run until ctx is done. --help (flag.ErrHelp) is
// a success.
func Main[D Runner](ctx context.Context, start func() (D, error)) error {
	d, err := start()
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	return d.Run(ctx)
}
