package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/rss/masterconn"
	"basalt/rss/rsspb"
)

// rssFlags are the flags of the rss commands.
type rssFlags struct {
	master  string
	timeout time.Duration
}

func newRSS(g *globals) *cobra.Command {
	f := &rssFlags{}
	cmd := &cobra.Command{Use: "rss", Short: "Inspect the remote shuffle service (status, workers, apps, shuffles) and decommission workers"}
	cmd.PersistentFlags().StringVar(&f.master, "master", "127.0.0.1:9090", "RSS master gRPC address, or a comma-separated list of replicated masters")
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 10*time.Second, "deadline for the request")
	show := func(use, short string, text func(*rsspb.StatusResponse) string, pick func(*rsspb.StatusResponse) any) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := f.status(cmd.Context())
			if err != nil {
				return err
			}
			return g.emit(pick(st), func() string { return text(st) })
		}}
	}
	whole := func(st *rsspb.StatusResponse) any { return st }
	cmd.AddCommand(
		show("status", "Workers, applications and shuffles in one summary", rssSummary, whole),
		show("workers", "Live workers with free disk, memory and partitions", rssWorkers, func(st *rsspb.StatusResponse) any { return &rsspb.StatusResponse{Workers: st.GetWorkers()} }),
		show("apps", "Registered applications and their leases", rssApps, func(st *rsspb.StatusResponse) any { return &rsspb.StatusResponse{Applications: st.GetApplications()} }),
		show("shuffles", "Active shuffles by application", rssShuffles, func(st *rsspb.StatusResponse) any { return &rsspb.StatusResponse{Applications: st.GetApplications()} }),
		newRSSWorker(g, f),
	)
	return cmd
}

// newRSSWorker is `basalt rss worker`: calls to one worker.
func newRSSWorker(g *globals, f *rssFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "worker", Short: "Act on one RSS worker"}
	var addr string
	dec := &cobra.Command{
		Use:   "decommission",
		Short: "Decommission a worker: no new partitions or pushes; it serves its committed data until its applications end, then exits",
		Long: `Decommission puts the worker in graceful decommission (idempotent): it gossips
decommissioning, so the master places no new partitions on it, refuses new
pushes (writers move those partitions elsewhere), lets the pushes in flight
finish and keeps serving its committed data. Once the master has deleted the
data of every application on it (they ended), basalt-rss-worker exits by
itself. It prints the worker's state: applications and partition files it
still holds, pushes in flight.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(g.stderr, "decommissioning RSS worker %s...\n", addr)
			resp, err := f.decommission(cmd.Context(), addr)
			if err != nil {
				return err
			}
			return g.emit(resp, func() string { return rssDecommissionText(addr, resp) })
		},
	}
	dec.Flags().StringVar(&addr, "worker", "", "RSS worker gRPC address (host:port); required")
	_ = dec.MarkFlagRequired("worker")
	cmd.AddCommand(dec)
	return cmd
}

// decommission calls Decommission on the worker at addr.
func (f *rssFlags) decommission(ctx context.Context, addr string) (*rsspb.DecommissionResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dialing RSS worker %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := rsspb.NewWorkerClient(conn).Decommission(ctx, &rsspb.DecommissionRequest{})
	if err != nil {
		return nil, fmt.Errorf("RSS worker %s: %w", addr, err)
	}
	return resp, nil
}

func rssDecommissionText(addr string, r *rsspb.DecommissionResponse) string {
	apps := "none"
	if len(r.GetApplications()) > 0 {
		apps = strings.Join(r.GetApplications(), ", ")
	}
	return fmt.Sprintf("worker %s is decommissioning\napplications with data: %s\npartition files: %d\npushes in flight: %d\n"+
		"it exits by itself once the master has deleted its applications' data",
		addr, apps, r.GetPartitionFiles(), r.GetPushesInFlight())
}

// status asks the master for its status.
func (f *rssFlags) status(ctx context.Context) (*rsspb.StatusResponse, error) {
	conn, err := masterconn.Dial(masterconn.Split(f.master), f.timeout, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("RSS master %q: %w", f.master, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	st, err := rsspb.NewMasterClient(conn).Status(ctx, &rsspb.StatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("RSS master %s: %w", f.master, err)
	}
	return st, nil
}

func rssSummary(st *rsspb.StatusResponse) string {
	shuffles := 0
	for _, a := range st.GetApplications() {
		shuffles += len(a.GetShuffles())
	}
	return fmt.Sprintf("workers: %d   applications: %d   shuffles: %d\n\n%s", len(st.GetWorkers()), len(st.GetApplications()), shuffles, rssWorkers(st))
}

func rssWorkers(st *rsspb.StatusResponse) string {
	rows := make([][]string, 0, len(st.GetWorkers()))
	for _, w := range st.GetWorkers() {
		state := "up"
		if w.GetDecommissioning() {
			state = "decommissioning"
		}
		rows = append(rows, []string{w.GetWorker().GetId(), w.GetWorker().GetAddr(), state,
			size(w.GetDiskFreeBytes()), size(w.GetMemoryUsedBytes()), fmt.Sprint(w.GetActivePartitions())})
	}
	return table("ID\tADDRESS\tSTATE\tDISK FREE\tMEMORY\tPARTITIONS", rows)
}

func rssApps(st *rsspb.StatusResponse) string {
	rows := make([][]string, 0, len(st.GetApplications()))
	for _, a := range st.GetApplications() {
		rows = append(rows, []string{a.GetAppId(), fmt.Sprint(len(a.GetShuffles())),
			time.UnixMilli(a.GetExpiresUnixMs()).UTC().Format(time.RFC3339)})
	}
	return table("APPLICATION\tSHUFFLES\tLEASE EXPIRES", rows)
}

func rssShuffles(st *rsspb.StatusResponse) string {
	var rows [][]string
	for _, a := range st.GetApplications() {
		for _, s := range a.GetShuffles() {
			rows = append(rows, []string{a.GetAppId(), fmt.Sprint(s)})
		}
	}
	return table("APPLICATION\tSHUFFLE", rows)
}
