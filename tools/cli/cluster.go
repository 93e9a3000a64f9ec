package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"basalt/mds/mdspb"
)

func newCluster(g *globals) *cobra.Command {
	f := &mdsFlags{}
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect the block storage cluster"}
	f.register(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Chunkservers, copysets healthy/degraded/unavailable, leaders per chunkserver",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd.Context(), func(ctx context.Context, c mdspb.MDSClient) error {
				st, err := c.ClusterStatus(ctx, &mdspb.ClusterStatusRequest{})
				if err != nil {
					return mdsError(err)
				}
				return g.emit(st, func() string { return clusterText(st) })
			})
		},
	})
	return cmd
}

func clusterText(st *mdspb.ClusterStatusResponse) string {
	rows := make([][]string, 0, len(st.GetChunkservers()))
	for _, cs := range st.GetChunkservers() {
		alive := "down"
		if cs.GetAlive() {
			alive = "up"
		}
		seen := time.UnixMilli(cs.GetLastHeartbeatUnixMs()).Format(time.TimeOnly)
		rows = append(rows, []string{
			fmt.Sprint(cs.GetId()), cs.GetAddress(), cs.GetZone(), alive, seen,
			fmt.Sprint(cs.GetCopysets()), fmt.Sprint(cs.GetLeaders()),
			size(cs.GetUsed()) + " / " + size(cs.GetCapacity()),
		})
	}
	return fmt.Sprintf("copysets: %d (healthy %d, degraded %d, unavailable %d)   volumes: %d\n",
		st.GetCopysets(), st.GetCopysetsHealthy(), st.GetCopysetsDegraded(), st.GetCopysetsUnavailable(), st.GetVolumes()) +
		table("ID\tADDRESS\tZONE\tSTATE\tLAST HEARTBEAT\tCOPYSETS\tLEADERS\tUSED", rows)
}
