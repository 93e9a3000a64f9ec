package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/mds/mdspb"
)

// mdsFlags are the flags of commands that talk to the MDS.
type mdsFlags struct {
	addr    string
	timeout time.Duration
}

func (f *mdsFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.addr, "mds", "127.0.0.1:6700", "metadata server gRPC address")
	cmd.PersistentFlags().DurationVar(&f.timeout, "timeout", 10*time.Second, "deadline for the request")
}

// call dials the MDS and runs fn with a deadline.
func (f *mdsFlags) call(ctx context.Context, fn func(context.Context, mdspb.MDSClient) error) error {
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing MDS %s: %w", f.addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	return fn(ctx, mdspb.NewMDSClient(conn))
}

// table renders rows with aligned columns.
func table(header string, rows [][]string) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	_ = w.Flush()
	return strings.TrimRight(b.String(), "\n")
}

// size renders bytes in binary units.
func size(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v, i = v/1024, i+1
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}
