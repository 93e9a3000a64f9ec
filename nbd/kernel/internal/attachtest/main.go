//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"basalt/nbd"
	"basalt/nbd/kernel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "attachtest:", err)
		stop()
		os.Exit(1) //basalt:allow exit the test program's main reports failure through its exit status
	}
}

// run dispatches to a subcommand. Every subcommand takes -label, echoed in
// its result line so a script's phases can be told apart.
func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: attachtest serve|status|list|disconnect|read [flags]")
	}
	cmds := map[string]func(context.Context, *flag.FlagSet, *string, []string, io.Writer) error{
		"serve": serve, "status": status, "list": list, "disconnect": disconnect, "read": read,
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	label := fs.String("label", "-", "label echoed in the result line")
	return cmd(ctx, fs, label, args[1:], out)
}

// serve attaches an in-memory export to a kernel nbd device over
// -conns socketpairs and serves it until the kernel disconnects or a signal
// arrives. It prints "ATTACHED label=L index=N" once the device is up, and
// "SERVE-END label=L err=..." (the first connection's error) at the end; a
// failed connect prints "CONNECT-ERROR label=L busy=B nodriver=N err=..."
// and fails.
func serve(ctx context.Context, fs *flag.FlagSet, label *string, args []string, out io.Writer) error {
	size := fs.Int64("size", 64<<20, "export size in bytes")
	index := fs.Int("index", -1, "device index, -1 for any")
	conns := fs.Int("conns", 1, "number of connections")
	timeout := fs.Duration("timeout", 30*time.Second, "I/O timeout")
	dead := fs.Duration("dead-timeout", 0, "dead connection timeout")
	backend := fs.String("backend", "", "backend identifier")
	onClose := fs.Bool("disconnect-on-close", false, "disconnect when the last opener closes the device")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mem := nbd.NewMemBackend(*size)
	srv, err := nbd.NewServer(nbd.Config{Exports: nbd.MapExports{"attachtest": mem}})
	if err != nil {
		return err
	}
	o := kernel.DefaultConnectOptions()
	o.Index, o.SizeBytes, o.Flags = *index, uint64(*size), uint64(nbd.TransmissionFlags(mem))
	o.Timeout, o.DeadConnTimeout, o.Backend, o.DisconnectOnClose = *timeout, *dead, *backend, *onClose
	var served []net.Conn
	for range *conns {
		conn, kernelEnd, err := socketpair()
		if err != nil {
			return err
		}
		defer func() { _ = kernelEnd.Close() }() // the kernel holds its own reference
		served, o.Sockets = append(served, conn), append(o.Sockets, kernelEnd)
	}
	idx, err := kernel.Connect(ctx, o)
	if err != nil {
		for _, c := range served {
			_ = c.Close()
		}
		fmt.Fprintf(out, "CONNECT-ERROR label=%s busy=%t nodriver=%t err=%q\n", *label,
			errors.Is(err, kernel.ErrDeviceBusy), errors.Is(err, kernel.ErrNoDriver), err)
		return err
	}
	fmt.Fprintf(out, "ATTACHED label=%s index=%d\n", *label, idx)
	errs := make([]error, len(served))
	var wg sync.WaitGroup
	for i, c := range served {
		wg.Go(func() { errs[i] = srv.ServeTransmission(ctx, c, mem) })
	}
	wg.Wait()
	err = errors.Join(errs...)
	fmt.Fprintf(out, "SERVE-END label=%s err=%s\n", *label, errString(err))
	return err
}

// socketpair returns a connected AF_UNIX stream pair: the server's end as
// a net.Conn and the kernel's end as a file.
func socketpair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "nbd-server")
	conn, err := net.FileConn(f) // dups the descriptor
	_ = f.Close()
	if err != nil {
		_ = unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair conn: %w", err)
	}
	return conn, os.NewFile(uintptr(fds[1]), "nbd-kernel"), nil
}

// status prints "STATUS label=L index=N connected=B backend=S pid=P
// size=Z" for one device, or "STATUS-ERROR label=L nodevice=B err=..." and
// fails.
func status(ctx context.Context, fs *flag.FlagSet, label *string, args []string, out io.Writer) error {
	index := fs.Int("index", 0, "device index")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := kernel.Status(ctx, *index)
	if err != nil {
		fmt.Fprintf(out, "STATUS-ERROR label=%s nodevice=%t err=%q\n", *label, errors.Is(err, kernel.ErrNoDevice), err)
		return err
	}
	fmt.Fprintf(out, "STATUS label=%s %s\n", *label, deviceFields(d))
	return nil
}

// list prints "LIST label=L devices=N connected=I,J" and a DEVICE line per
// device, or "LIST-ERROR label=L nodriver=B err=..." and fails.
func list(ctx context.Context, fs *flag.FlagSet, label *string, args []string, out io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	devs, err := kernel.List(ctx)
	if err != nil {
		fmt.Fprintf(out, "LIST-ERROR label=%s nodriver=%t err=%q\n", *label, errors.Is(err, kernel.ErrNoDriver), err)
		return err
	}
	var connected []string
	for _, d := range devs {
		if d.Connected {
			connected = append(connected, fmt.Sprint(d.Index))
		}
	}
	fmt.Fprintf(out, "LIST label=%s devices=%d connected=%s\n", *label, len(devs), strings.Join(connected, ","))
	return nil
}

// disconnect prints "DISCONNECTED label=L index=N elapsed=D", or
// "DISCONNECT-ERROR label=L nodevice=B err=..." and fails.
func disconnect(ctx context.Context, fs *flag.FlagSet, label *string, args []string, out io.Writer) error {
	index := fs.Int("index", 0, "device index")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	if err := kernel.Disconnect(ctx, *index); err != nil {
		fmt.Fprintf(out, "DISCONNECT-ERROR label=%s nodevice=%t err=%q\n", *label, errors.Is(err, kernel.ErrNoDevice), err)
		return err
	}
	fmt.Fprintf(out, "DISCONNECTED label=%s index=%d elapsed=%s\n", *label, *index, time.Since(start).Round(time.Millisecond))
	return nil
}

// read reads one 4 KiB block with O_DIRECT (no page cache) and prints
// "READ label=L err=none|ERRNO elapsed=D". A failed read is not a failure
// of the command: the caller asserts on the line.
func read(_ context.Context, fs *flag.FlagSet, label *string, args []string, out io.Writer) error {
	dev := fs.String("dev", "", "block device")
	off := fs.Int64("off", 0, "offset in bytes, 4 KiB aligned")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fd, err := unix.Open(*dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", *dev, err)
	}
	defer func() { _ = unix.Close(fd) }()
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE) // page aligned
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	defer func() { _ = unix.Munmap(buf) }()
	start := time.Now()
	_, err = unix.Pread(fd, buf, *off)
	elapsed := time.Since(start)
	result := "none"
	var errno unix.Errno
	if errors.As(err, &errno) {
		result = unix.ErrnoName(errno)
	} else if err != nil {
		result = fmt.Sprintf("%q", err)
	}
	fmt.Fprintf(out, "READ label=%s dev=%s off=%d err=%s elapsed=%s\n", *label, *dev, *off, result, elapsed.Round(time.Millisecond))
	return nil
}

func deviceFields(d kernel.Device) string {
	return fmt.Sprintf("index=%d connected=%t backend=%s pid=%d size=%d", d.Index, d.Connected, d.Backend, d.PID, d.SizeBytes)
}

func errString(err error) string {
	if err == nil {
		return "none"
	}
	return fmt.Sprintf("%q", err)
}
