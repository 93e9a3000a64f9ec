package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"basalt/nbd/attach"
	"basalt/nbd/gateway"
)

// ErrAttachProcess is returned when the background attach process exits
// without reporting a device.
var ErrAttachProcess = errors.New("cli: the attach process exited without attaching")

func newNBD(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "nbd", Short: "Map volumes to /dev/nbdN through the kernel's nbd driver (attach, detach, list)"}
	cmd.AddCommand(nbdAttach(g), nbdDetach(g), nbdList(g))
	return cmd
}

// attachFlags are the flags of `basalt nbd attach`.
type attachFlags struct {
	mds, device, logFile string
	connections          int
	timeout, deadConn    time.Duration
	force, foreground    bool
	readyFD              int
}

// attachResult is what attach prints (and what the background process
// reports to its parent).
type attachResult struct {
	Device string `json:"device"`
	Volume string `json:"volume"`
	PID    int    `json:"pid"`
	Error  string `json:"error,omitempty"`
}

func nbdAttach(g *globals) *cobra.Command {
	f := &attachFlags{}
	d := attach.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "attach VOLUME",
		Short: "Map a volume to /dev/nbdN (needs root and the nbd kernel module) and print the device",
		Long: `attach opens VOLUME as its writer and connects it to a kernel nbd device
through a socketpair to an NBD server in a background process (one per
device), then prints the device. The process lives until "basalt nbd detach"
(or SIGTERM to it, which detaches too). With --foreground it stays in the
foreground instead and detaches on Ctrl-C.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.foreground {
				return f.runForeground(cmd.Context(), g, args[0])
			}
			return f.spawn(g, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.mds, "mds", "127.0.0.1:6700", "comma-separated metadata server addresses")
	fl.StringVar(&f.device, "device", "", "device to use, /dev/nbdN (default: the first free one)")
	fl.IntVar(&f.connections, "connections", d.Connections, "sockets (kernel queues) per device")
	fl.DurationVar(&f.timeout, "timeout", d.Timeout, "kernel I/O timeout: a request unanswered this long fails the connection")
	fl.DurationVar(&f.deadConn, "dead-conn-timeout", d.DeadConnTimeout, "how long the kernel holds I/O after the serving process died before failing it with EIO")
	fl.BoolVar(&f.force, "force", false, "take the volume's writer lease from its current holder")
	fl.BoolVar(&f.foreground, "foreground", false, "serve in this process instead of a background one")
	fl.StringVar(&f.logFile, "log-file", "", "log of the background process (default: none)")
	fl.IntVar(&f.readyFD, "ready-fd", 0, "internal: report the result on this file descriptor")
	_ = fl.MarkHidden("ready-fd")
	return cmd
}

// options builds attach.Options for volume.
func (f *attachFlags) options(volume string, log *slog.Logger) (attach.Options, error) {
	o := attach.DefaultOptions()
	o.Volume, o.Connections, o.Timeout, o.DeadConnTimeout, o.Logger = volume, f.connections, f.timeout, f.deadConn, log
	o.Client.MDSAddrs, o.Client.Force, o.Client.Logger = gateway.SplitAddrs(f.mds), f.force, log
	if host, err := os.Hostname(); err == nil {
		o.Client.ClientName = host + "/nbd-attach/" + volume
	}
	if f.device != "" {
		n, err := attach.ParseDevice(f.device)
		if err != nil {
			return o, err
		}
		o.Device = n
	}
	return o, nil
}

// runForeground attaches and serves until the device is detached or ctx
// ends (which detaches it).
func (f *attachFlags) runForeground(ctx context.Context, g *globals, volume string) error {
	log := slog.New(slog.NewTextHandler(g.stderr, nil))
	opts, err := f.options(volume, log)
	if err != nil {
		return f.report(g, attachResult{Volume: volume}, err)
	}
	a, err := attach.Attach(ctx, opts)
	if err != nil {
		return f.report(g, attachResult{Volume: volume}, err)
	}
	if err := f.report(g, attachResult{Device: a.Device.Path(), Volume: volume, PID: os.Getpid()}, nil); err != nil {
		return err
	}
	return a.Wait()
}

// report sends the result to the parent (--ready-fd) or prints it.
func (f *attachFlags) report(g *globals, r attachResult, err error) error {
	if f.readyFD == 0 {
		if err != nil {
			return err
		}
		return g.emit(r, func() string { return r.Device })
	}
	if err != nil {
		r.Error = err.Error()
	}
	w := os.NewFile(uintptr(f.readyFD), "ready")
	defer w.Close()
	if jerr := json.NewEncoder(w).Encode(r); jerr != nil {
		return errors.Join(err, jerr)
	}
	return err
}

// spawn starts `basalt nbd attach --foreground` as a background process
// in its own session, waits for its report and prints it.
func (f *attachFlags) spawn(g *globals, volume string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the basalt executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	logOut, err := f.openLog()
	if err != nil {
		_ = w.Close()
		return err
	}
	cmd := exec.Command(exe, f.childArgs(volume)...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = logOut, logOut, []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	_ = w.Close()
	_ = logOut.Close()
	if err != nil {
		return fmt.Errorf("starting the attach process: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reap it if it fails while we wait
	var res attachResult
	if err := json.NewDecoder(r).Decode(&res); err != nil {
		return fmt.Errorf("%w (see --log-file): %w", ErrAttachProcess, err)
	}
	if res.Error != "" {
		return fmt.Errorf("attaching %s: %s", volume, res.Error)
	}
	return g.emit(res, func() string { return res.Device })
}

// childArgs are the background process's arguments.
func (f *attachFlags) childArgs(volume string) []string {
	args := []string{"nbd", "attach", volume, "--foreground", "--ready-fd", "3",
		"--mds", f.mds, "--connections", fmt.Sprint(f.connections),
		"--timeout", f.timeout.String(), "--dead-conn-timeout", f.deadConn.String()}
	if f.device != "" {
		args = append(args, "--device", f.device)
	}
	if f.force {
		args = append(args, "--force")
	}
	return args
}

// openLog opens the background process's log, or /dev/null.
func (f *attachFlags) openLog() (*os.File, error) {
	path := os.DevNull
	if f.logFile != "" {
		path = f.logFile
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log: %w", err)
	}
	return out, nil
}

func nbdDetach(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "detach DEVICE|VOLUME",
		Short: "Disconnect /dev/nbdN (or the device mapping VOLUME) and wait for its process to release the volume",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			fmt.Fprintf(g.stderr, "detaching %s...\n", args[0])
			m, err := attach.Detach(ctx, args[0])
			if err != nil {
				return err
			}
			return g.emit(m, func() string { return fmt.Sprintf("detached %s (volume %s)", m.Device, m.Volume) })
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the device's requests and its process to finish")
	return cmd
}

func nbdList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List the nbd devices that map Basalt volumes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := attach.List(cmd.Context())
			if err != nil {
				return err
			}
			if ms == nil {
				ms = []attach.Mapping{}
			}
			return g.emit(ms, func() string {
				rows := make([][]string, len(ms))
				for i, m := range ms {
					rows[i] = []string{m.Device, m.Volume, fmt.Sprint(m.PID), size(m.SizeBytes)}
				}
				return table("DEVICE\tVOLUME\tPID\tSIZE", rows)
			})
		},
	}
}
