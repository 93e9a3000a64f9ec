package cli

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"basalt/tools/raftdemo"
)

// demoFile is the YAML form of the demo's configuration; every key is
// optional and defaults to the value shown by `basalt raft-demo --help`.
type demoFile struct {
	Data        *string        `yaml:"data"`
	Groups      *int           `yaml:"groups"`
	BasePort    *int           `yaml:"base_port"`
	MetricsAddr *string        `yaml:"metrics_addr"`
	Writers     *int           `yaml:"writers"`
	Payload     *int           `yaml:"payload_bytes"`
	Chaos       *time.Duration `yaml:"chaos"`
	Duration    *time.Duration `yaml:"duration"`
}

func newRaftDemo(g *globals) *cobra.Command {
	cfg := raftdemo.DefaultConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "raft-demo",
		Short: "Run a 3-host multi-raft cluster on this machine under a write load",
		Long: `raft-demo starts three raft hosts in this process, talking gRPC over
127.0.0.1, each keeping its raft log in Pebble under --data. It creates
--groups raft groups replicated on all three hosts, proposes --payload-bytes
entries from --writers concurrent writers, and prints progress every second.
Run it again with the same --data and it recovers every group from disk.
--chaos 10s stops a random host every 10 seconds and restarts it 5 seconds
later. Metrics: http://127.0.0.1:9464/metrics (and /healthz).

Flags override the YAML file given with --config (keys: data, groups,
base_port, metrics_addr, writers, payload_bytes, chaos, duration).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyDemoFile(cmd, configFile, &cfg); err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
				return err
			}
			return raftdemo.Run(cmd.Context(), cfg, func(p raftdemo.Progress) {
				_ = g.emit(p, func() string { return progressLine(p) })
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file with demo settings (flags override it)")
	f.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for the hosts' data")
	f.IntVar(&cfg.Groups, "groups", cfg.Groups, "number of raft groups")
	f.IntVar(&cfg.BasePort, "base-port", cfg.BasePort, "host i listens on 127.0.0.1:base-port+i-1")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address for /metrics and /healthz (empty: off)")
	f.IntVar(&cfg.Writers, "writers", cfg.Writers, "concurrent proposers")
	f.IntVar(&cfg.PayloadBytes, "payload-bytes", cfg.PayloadBytes, "bytes per proposal")
	f.DurationVar(&cfg.Chaos, "chaos", 0, "stop a random host this often (0: never)")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	return cmd
}

// applyDemoFile loads the YAML file into cfg for every key whose flag was
// not given on the command line.
func applyDemoFile(cmd *cobra.Command, path string, cfg *raftdemo.Config) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	var df demoFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&df); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	set := func(flag string, apply func()) {
		if !cmd.Flags().Changed(flag) {
			apply()
		}
	}
	setPtr(set, "data", df.Data, &cfg.DataDir)
	setPtr(set, "groups", df.Groups, &cfg.Groups)
	setPtr(set, "base-port", df.BasePort, &cfg.BasePort)
	setPtr(set, "metrics-addr", df.MetricsAddr, &cfg.MetricsAddr)
	setPtr(set, "writers", df.Writers, &cfg.Writers)
	setPtr(set, "payload-bytes", df.Payload, &cfg.PayloadBytes)
	setPtr(set, "chaos", df.Chaos, &cfg.Chaos)
	setPtr(set, "duration", df.Duration, &cfg.Duration)
	return nil
}

func setPtr[T any](set func(string, func()), flag string, v *T, dst *T) {
	if v != nil {
		set(flag, func() { *dst = *v })
	}
}

func progressLine(p raftdemo.Progress) string {
	hosts := make([]string, 0, len(p.Leaders))
	for h, n := range p.Leaders {
		hosts = append(hosts, fmt.Sprintf("h%s=%d", h, n))
	}
	slices.Sort(hosts)
	line := fmt.Sprintf("%6s  commits %d (%.0f/s)  applied %d (recovered %d)  leaders %s  errors %d",
		p.Elapsed.Truncate(time.Second), p.Commits, p.Rate, p.Applied, p.Recovered, strings.Join(hosts, " "), p.Errors)
	if len(p.Down) > 0 {
		line += fmt.Sprintf("  down %v", p.Down)
	}
	if p.Event != "" {
		line += "  [" + p.Event + "]"
	}
	return line
}
