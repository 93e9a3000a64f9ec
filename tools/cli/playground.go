package cli

import (
	"log/slog"

	"github.com/spf13/cobra"

	"basalt/tools/playground"
)

func newPlayground(g *globals) *cobra.Command {
	cfg := playground.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "playground",
		Short: "Run a local cluster (MDS, 3 chunkservers, NBD, RSS master and 2 workers) with data under --data",
		Long: `playground starts, in this process, a metadata server, three chunkservers in
three zones, an NBD server on 127.0.0.1:10809 and the remote shuffle
service (a master on 127.0.0.1:9090 and two workers), keeping all data
under --data (default ./basalt-data). On first start it creates a thin
10 GiB volume named demo; every volume is exported over NBD under its own
name. Ctrl-C stops it cleanly; starting it again reuses the data. The
shuffle service stays on 127.0.0.1 even with --public-host.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return playground.Run(cmd.Context(), cfg, g.stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory")
	f.StringVar(&cfg.MDSAddr, "mds-addr", cfg.MDSAddr, "MDS gRPC address")
	f.StringVar(&cfg.NBDAddr, "nbd-addr", cfg.NBDAddr, "NBD listen address")
	f.StringVar(&cfg.PublicHost, "public-host", "", "listen on every interface and advertise this host, so VMs or other machines can reach the cluster (e.g. 10.0.2.2 for qemu user networking)")
	f.IntVar(&cfg.ChunkserverBasePort, "chunkserver-base-port", cfg.ChunkserverBasePort, "chunkserver i listens on 127.0.0.1:port+i (negative: free ports)")
	f.StringVar(&cfg.RSSMasterAddr, "rss-master-addr", cfg.RSSMasterAddr, "RSS master gRPC address (loopback)")
	f.IntVar(&cfg.RSSWorkerBasePort, "rss-worker-base-port", cfg.RSSWorkerBasePort, "RSS worker i (1, 2) listens on 127.0.0.1:port+i (negative: free ports)")
	f.IntVar(&cfg.RSSGossipBasePort, "rss-gossip-base-port", cfg.RSSGossipBasePort, "the RSS master gossips on 127.0.0.1:port, worker i on port+i (negative: free ports)")
	return cmd
}
