package attach

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"basalt/client"
	"basalt/nbd"
	"basalt/nbd/kernel"
)

// BackendPrefix starts the backend identifier of every device Attach
// connects ("basalt:VOLUME"), shown in /sys/block/nbdN/backend; List uses
// it to tell Basalt's devices from others.
const BackendPrefix = "basalt:"

// Options configure Attach.
type Options struct {
	// Volume is the volume to map. Required.
	Volume string
	// Client opens the volume; Writer is forced on. MDSAddrs is required.
	Client client.Options
	// Device is the N of /dev/nbdN, or -1 for the first free device.
	// DefaultOptions sets -1.
	Device int
	// Connections is the number of sockets (kernel queues) per device.
	// Default 2; every connection shares one client.Volume.
	Connections int
	// Timeout is the kernel's I/O timeout: a request the server has not
	// answered in this time fails the connection. It must exceed the
	// client's RetryDeadline so that a leader election or a chunkserver
	// restart slows I/O down rather than failing it. Default 2 minutes.
	Timeout time.Duration
	// DeadConnTimeout is how long the kernel holds I/O for a dead
	// connection before failing it with EIO. Default 0: at once (this
	// package does not reattach).
	DeadConnTimeout time.Duration
	// Logger receives connection-level events. Nil: discard.
	Logger *slog.Logger
}

// DefaultOptions returns Options with the documented defaults; Volume and
// Client.MDSAddrs remain to be set.
func DefaultOptions() Options {
	return Options{Client: client.DefaultOptions(), Device: -1, Connections: 2, Timeout: 2 * time.Minute}
}

// ErrNoVolume is returned when Options.Volume is empty.
var ErrNoVolume = errors.New("attach: no volume given")

// Attachment is a mapped volume: the device and the servers behind it.
type Attachment struct {
	// Device is the kernel device as Attach connected it.
	Device kernel.Device
	vol    *client.Volume
	done   chan struct{}
	err    error // set before done closes
}

// Attach opens the volume as its writer and connects it to a kernel nbd
// device. It returns once the device is usable; the servers run until the
// device is disconnected (Detach, `basalt nbd detach`, or the kernel) or
// ctx ends, which disconnects it.
func Attach(ctx context.Context, opts Options) (*Attachment, error) {
	if opts.Volume == "" {
		return nil, ErrNoVolume
	}
	opts.Client.Writer = true
	opts.Connections = max(opts.Connections, 1)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := kernel.Probe(ctx); err != nil {
		return nil, err
	}
	v, err := client.Open(ctx, opts.Client, opts.Volume)
	if err != nil {
		return nil, err
	}
	a, err := connect(ctx, opts, v)
	if err != nil {
		return nil, errors.Join(err, v.Close())
	}
	return a, nil
}

// connect serves v on socketpairs and hands them to the kernel.
func connect(ctx context.Context, opts Options, v *client.Volume) (*Attachment, error) {
	srv, err := nbd.NewServer(nbd.Config{Exports: nbd.MapExports{}, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	ours, theirs, err := socketpairs(opts.Connections)
	if err != nil {
		return nil, err
	}
	defer closeFiles(theirs) // the kernel holds its own references
	a := &Attachment{vol: v, done: make(chan struct{})}
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	errs := make(chan error, len(ours))
	for _, c := range ours {
		go func() { errs <- srv.ServeTransmission(serveCtx, c, v) }()
	}
	index, err := kernel.Connect(ctx, kernel.ConnectOptions{
		Index: opts.Device, Sockets: theirs, SizeBytes: uint64(v.Size()), BlockSize: kernel.DefaultBlockSize,
		Flags: uint64(nbd.TransmissionFlags(v)), Timeout: opts.Timeout, DeadConnTimeout: opts.DeadConnTimeout,
		Backend: BackendPrefix + opts.Volume,
	})
	if err != nil {
		cancel()
		drain(errs, len(ours))
		return nil, fmt.Errorf("connecting /dev/nbd to volume %q: %w", opts.Volume, err)
	}
	a.Device = kernel.Device{Index: index, Connected: true, Backend: BackendPrefix + opts.Volume, PID: os.Getpid(), SizeBytes: uint64(v.Size())}
	go a.serve(ctx, cancel, errs, len(ours), opts.Logger)
	return a, nil
}

// serve waits for every connection to end (or ctx, which disconnects the
// device first), then closes the volume.
func (a *Attachment) serve(ctx context.Context, cancel context.CancelFunc, errs chan error, n int, log *slog.Logger) {
	defer close(a.done)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if err := kernel.Disconnect(context.Background(), a.Device.Index); err != nil {
			log.Warn("attach: disconnecting on shutdown", "device", a.Device.Path(), "err", err)
		}
	})
	defer stop()
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil && !errors.Is(err, net.ErrClosed) && !isEOF(err) {
			first = err
		}
	}
	a.err = errors.Join(first, a.vol.Close())
	log.Info("attach: device disconnected", "device", a.Device.Path(), "err", a.err)
}

// Wait blocks until the device is disconnected and the volume closed, and
// returns the first connection error (nil after a clean disconnect).
func (a *Attachment) Wait() error {
	<-a.done
	return a.err
}

// Done is closed when Wait would return.
func (a *Attachment) Done() <-chan struct{} { return a.done }

// Detach disconnects the device and waits for Wait.
func (a *Attachment) Detach(ctx context.Context) error {
	if err := kernel.Disconnect(ctx, a.Device.Index); err != nil && !errors.Is(err, kernel.ErrNoDevice) {
		return err
	}
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// socketpairs returns n connected unix stream socket pairs: our ends as
// net.Conns, theirs as files for the kernel.
func socketpairs(n int) (ours []net.Conn, theirs []*os.File, err error) {
	for range n {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.CloseOnExec(fds[0])
			unix.CloseOnExec(fds[1])
		}
		if err != nil {
			closeAll(ours)
			closeFiles(theirs)
			return nil, nil, fmt.Errorf("creating a socketpair: %w", err)
		}
		f := os.NewFile(uintptr(fds[0]), "nbd-server")
		c, err := net.FileConn(f)
		_ = f.Close() // FileConn dups it
		if err != nil {
			_ = unix.Close(fds[1])
			closeAll(ours)
			closeFiles(theirs)
			return nil, nil, fmt.Errorf("wrapping a socketpair: %w", err)
		}
		ours = append(ours, c)
		theirs = append(theirs, os.NewFile(uintptr(fds[1]), "nbd-kernel"))
	}
	return ours, theirs, nil
}

func closeAll(cs []net.Conn) {
	for _, c := range cs {
		_ = c.Close()
	}
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// drain receives n results.
func drain(errs chan error, n int) {
	for range n {
		<-errs
	}
}

// isEOF reports whether err is the peer (the kernel) closing its socket.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// List returns the connected devices that map Basalt volumes.
func List(ctx context.Context) ([]Mapping, error) {
	devs, err := kernel.List(ctx)
	if err != nil {
		return nil, err
	}
	var out []Mapping
	for _, d := range devs {
		if vol, ok := volumeOf(d); ok && d.Connected {
			out = append(out, Mapping{Device: d.Path(), Volume: vol, PID: d.PID, SizeBytes: d.SizeBytes})
		}
	}
	return out, nil
}

// Mapping is one mapped volume as List reports it.
type Mapping struct {
	Device    string `json:"device"`
	Volume    string `json:"volume"`
	PID       int    `json:"pid"`
	SizeBytes uint64 `json:"size_bytes"`
}

// volumeOf returns the volume a device maps, from its backend identifier.
func volumeOf(d kernel.Device) (string, bool) {
	if len(d.Backend) <= len(BackendPrefix) || d.Backend[:len(BackendPrefix)] != BackendPrefix {
		return "", false
	}
	return d.Backend[len(BackendPrefix):], true
}
