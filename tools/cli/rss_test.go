package cli_test

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"basalt/rss/rsspb"
	"basalt/rss/worker"
	"basalt/tools/cli"
)

// TestRSSWorkerDecommission: `basalt rss worker decommission` puts the
// worker in decommission, prints a progress line on stderr and, with
// -o json, the worker's DecommissionResponse; --worker is required.
func TestRSSWorkerDecommission(t *testing.T) {
	cfg := worker.DefaultConfig()
	cfg.Dirs, cfg.Logger = []string{t.TempDir()}, slog.New(slog.DiscardHandler)
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	rsspb.RegisterWorkerServer(srv, w)
	go func() { _ = srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}()

	var out, errOut bytes.Buffer
	if err := cli.Run(t.Context(), []string{"rss", "worker", "decommission", "--worker", lis.Addr().String(), "-o", "json"}, &out, &errOut); err != nil {
		t.Fatalf("decommission: %v\nstderr:\n%s", err, errOut.String())
	}
	var resp rsspb.DecommissionResponse
	if err := protojson.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatalf("output %q is not a DecommissionResponse: %v", out.String(), err)
	}
	if !resp.GetDecommissioning() || !w.Decommissioning() {
		t.Fatalf("response %v, worker decommissioning %v; want both true", &resp, w.Decommissioning())
	}
	if !strings.Contains(errOut.String(), "decommissioning RSS worker "+lis.Addr().String()) {
		t.Fatalf("stderr %q lacks the progress line", errOut.String())
	}
	out.Reset()
	if err := cli.Run(t.Context(), []string{"rss", "worker", "decommission", "--worker", lis.Addr().String()}, &out, &errOut); err != nil {
		t.Fatalf("decommission again: %v", err)
	}
	if !strings.Contains(out.String(), "is decommissioning") {
		t.Fatalf("text output %q", out.String())
	}
	if err := cli.Run(t.Context(), []string{"rss", "worker", "decommission"}, &out, &errOut); err == nil {
		t.Fatal("decommission without --worker succeeded")
	}
}
