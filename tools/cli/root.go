package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Errors of the command line itself.
var (
	ErrBadOutput = errors.New("cli: -o must be text or json")
	ErrBadSize   = errors.New("cli: bad size (want e.g. 10GiB, 512MiB or a byte count)")
)

// Run executes the basalt command line with args (without the program
// name), writing to stdout and stderr. It returns when the command ends or
// ctx is canceled (Ctrl-C).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// globals are the flags every command shares.
type globals struct {
	output string
	stdout io.Writer
	stderr io.Writer
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "basalt",
		Short:         "Basalt: distributed block storage and remote shuffle service",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if g.output != "text" && g.output != "json" {
				return fmt.Errorf("%w (got %q)", ErrBadOutput, g.output)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	root.AddCommand(newRaftDemo(g), newCluster(g), newVolume(g), newNBD(g), newRSS(g), newPlayground(g))
	return root
}

// marshalJSON uses protojson (snake_case field names, zero values shown)
// for protobuf messages and encoding/json for everything else.
func marshalJSON(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	}
	return json.Marshal(v)
}

// emit prints v as one JSON line, or text(v) in text mode.
func (g *globals) emit(v any, text func() string) error {
	if g.output == "json" {
		b, err := marshalJSON(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(g.stdout, string(b))
		return err
	}
	_, err := fmt.Fprintln(g.stdout, text())
	return err
}
