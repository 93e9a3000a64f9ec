package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"basalt/mds/mdspb"
)

func newVolume(g *globals) *cobra.Command {
	f := &mdsFlags{}
	cmd := &cobra.Command{Use: "volume", Short: "Create, list, inspect, resize and delete volumes"}
	f.register(cmd)
	cmd.AddCommand(volumeCreate(g, f), volumeList(g, f), volumeInfo(g, f), volumeResize(g, f), volumeDelete(g, f))
	return cmd
}

func volumeCreate(g *globals, f *mdsFlags) *cobra.Command {
	var sizeArg, owner string
	cmd := &cobra.Command{
		Use:   "create NAME --size SIZE",
		Short: "Create a thin-provisioned volume (size like 10GiB, 512MiB or bytes; a multiple of 4 KiB)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseSize(sizeArg)
			if err != nil {
				return err
			}
			return f.call(cmd.Context(), func(ctx context.Context, c mdspb.MDSClient) error {
				v, err := c.CreateVolume(ctx, &mdspb.CreateVolumeRequest{Name: args[0], Size: n, Owner: owner})
				return g.emitVolume(v, err)
			})
		},
	}
	cmd.Flags().StringVar(&sizeArg, "size", "", "volume size (required)")
	cmd.Flags().StringVar(&owner, "owner", "", "owner recorded with the volume")
	_ = cmd.MarkFlagRequired("size")
	return cmd
}

func volumeList(g *globals, f *mdsFlags) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List volumes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd.Context(), func(ctx context.Context, c mdspb.MDSClient) error {
				l, err := c.ListVolumes(ctx, &mdspb.ListVolumesRequest{})
				if err != nil {
					return mdsError(err)
				}
				return g.emit(l, func() string { return volumesText(l.GetVolumes()) })
			})
		},
	}
}

func volumeInfo(g *globals, f *mdsFlags) *cobra.Command {
	return &cobra.Command{
		Use: "info NAME", Short: "Show a volume", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd.Context(), func(ctx context.Context, c mdspb.MDSClient) error {
				v, err := c.StatVolume(ctx, &mdspb.StatVolumeRequest{Name: args[0]})
				return g.emitVolume(v, err)
			})
		},
	}
}

func volumeResize(g *globals, f *mdsFlags) *cobra.Command {
	var sizeArg string
	cmd := &cobra.Command{
		Use: "resize NAME --size SIZE", Short: "Grow a volume", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseSize(sizeArg)
			if err != nil {
				return err
			}
			return f.call(cmd.Context(), func(ctx context.Context, c mdspb.MDSClient) error {
				v, err := c.ResizeVolume(ctx, &mdspb.ResizeVolumeRequest{Name: args[0], Size: n})
				return g.emitVolume(v, err)
			})
		},
	}
	cmd.Flags().StringVar(&sizeArg, "size", "", "new size (required)")
	_ = cmd.MarkFlagRequired("size")
	return cmd
}

func volumeDelete(g *globals, f *mdsFlags) *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete a volume (its chunks are freed in the background)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd.Context(), func(ctx context.Context, c mdspb.MDSClient) error {
				if _, err := c.DeleteVolume(ctx, &mdspb.DeleteVolumeRequest{Name: args[0]}); err != nil {
					return mdsError(err)
				}
				res := map[string]string{"deleted": args[0]}
				return g.emit(res, func() string { return "deleted volume " + args[0] })
			})
		},
	}
}

func (g *globals) emitVolume(v *mdspb.Volume, err error) error {
	if err != nil {
		return mdsError(err)
	}
	return g.emit(v, func() string { return volumesText([]*mdspb.Volume{v}) })
}

func volumesText(vs []*mdspb.Volume) string {
	rows := make([][]string, 0, len(vs))
	for _, v := range vs {
		allocated := v.GetAllocatedSegments() * v.GetSegmentSize()
		rows = append(rows, []string{
			v.GetName(), size(v.GetSize()), size(allocated), v.GetOwner(),
			time.UnixMilli(v.GetCreatedUnixMs()).UTC().Format(time.RFC3339),
		})
	}
	return table("NAME\tSIZE\tALLOCATED\tOWNER\tCREATED", rows)
}

// mdsError turns a gRPC status into a readable error.
func mdsError(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", strings.ToLower(st.Code().String()), st.Message())
	}
	return err
}

// parseSize parses sizes like 4096, 512MiB, 10GiB, 1TiB (binary units;
// KB/MB/GB/TB are accepted as the same binary units).
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%w: size %q", ErrBadSize, s)
	}
	return n * mult, nil
}
