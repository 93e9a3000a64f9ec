package kernel

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the kernel shows block devices and processes.
const (
	sysBlock = "/sys/block"
	procRoot = "/proc"
)

// Connect connects an nbd device to o.Sockets with NBD_CMD_CONNECT and
// returns its index N (the device is /dev/nbdN). When the kernel has no nbd
// generic netlink family it runs `modprobe nbd` once (if modprobe exists,
// ignoring its failure) and tries again; if the family is still missing the
// error wraps ErrNoDriver. A device already in use gives an error wrapping
// ErrDeviceBusy; a caller without CAP_SYS_ADMIN one satisfying
// errors.Is(err, os.ErrPermission). Other refusals are a *NetlinkError
// whose reason is in the kernel log.
//
// The kernel does no NBD handshake: each socket's peer must already be in
// the transmission phase. Once connected the device lives until
// Disconnect, DisconnectOnClose, or module unload; closing or losing the
// sockets makes its I/O fail but does not remove it. ctx is checked before
// each request to the kernel, not during one (see the package doc).
func Connect(ctx context.Context, o ConnectOptions) (int, error) {
	if err := o.Validate(); err != nil {
		return 0, err
	}
	o = o.withDefaults()
	c, err := dial()
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close() }()
	family, err := familyLoading(ctx, c)
	if err != nil {
		return 0, err
	}
	fds := make([]uint32, len(o.Sockets))
	for i, s := range o.Sockets {
		fds[i] = uint32(s.Fd())
	}
	seq := c.nextSeq()
	msgs, err := c.execute(ctx, connectRequest(family, seq, o, fds), seq)
	runtime.KeepAlive(o.Sockets)
	if err != nil {
		return 0, connectError(o.Index, err)
	}
	if len(msgs) == 0 {
		return 0, fmt.Errorf("connecting nbd device: %w: no reply", errMalformed)
	}
	return parseConnectReply(msgs[0].payload)
}

// connectError explains a refused NBD_CMD_CONNECT.
func connectError(index int, err error) error {
	dev := "an nbd device"
	if index >= 0 {
		dev = fmt.Sprintf("/dev/nbd%d", index)
	}
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("connecting %s: %w: %w", dev, ErrDeviceBusy, err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("connecting %s (needs CAP_SYS_ADMIN): %w", dev, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("connecting %s (the kernel log says why): %w", dev, err)
	}
	return fmt.Errorf("connecting %s: %w", dev, err)
}

// Probe reports whether the kernel has the nbd driver, loading it with
// `modprobe nbd` when it is missing, as Connect does; the error wraps
// ErrNoDriver when it cannot be had. Callers use it to fail fast before
// doing expensive work for a Connect that cannot succeed.
func Probe(ctx context.Context) error {
	c, err := dial()
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_, err = familyLoading(ctx, c)
	return err
}

// familyLoading resolves the nbd family, loading the driver with modprobe
// when it is missing.
func familyLoading(ctx context.Context, c *conn) (uint16, error) {
	family, err := c.family(ctx)
	if !errors.Is(err, ErrNoDriver) {
		return family, err
	}
	note := modprobe(ctx)
	family, err = c.family(ctx)
	if errors.Is(err, ErrNoDriver) {
		return 0, fmt.Errorf("%w; %s", err, note)
	}
	return family, err
}

// modprobe runs `modprobe nbd` and describes what happened, for an error
// message.
func modprobe(ctx context.Context) string {
	path, err := exec.LookPath("modprobe")
	if err != nil {
		return "modprobe is not installed"
	}
	out, err := exec.CommandContext(ctx, path, "nbd").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("`modprobe nbd` failed (%v): %s", err, strings.TrimSpace(string(out)))
	}
	return "`modprobe nbd` succeeded but the family is still missing"
}

// Disconnect disconnects /dev/nbdN with NBD_CMD_DISCONNECT: the kernel
// sends NBD_CMD_DISC to the server, shuts the sockets down, fails queued
// I/O and waits for its receive threads. A device that exists but is not
// connected is not an error; one that does not exist gives an error
// wrapping ErrNoDevice. Connected in Status turns false once the last
// opener of /dev/nbdN has closed it.
func Disconnect(ctx context.Context, index int) error {
	if index < 0 {
		return fmt.Errorf("disconnecting nbd device %d: %w", index, ErrNoDevice)
	}
	c, err := dial()
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	family, err := c.family(ctx)
	if err != nil {
		return fmt.Errorf("disconnecting /dev/nbd%d: %w", index, err)
	}
	seq := c.nextSeq()
	_, err = c.execute(ctx, disconnectRequest(family, seq, index), seq)
	if errors.Is(err, unix.EINVAL) {
		// The kernel says EINVAL both for a missing device and for one
		// being removed; tell the first apart.
		if devs, serr := c.status(ctx, family, index); serr == nil && len(devs) == 0 {
			return fmt.Errorf("disconnecting /dev/nbd%d: %w: %w", index, ErrNoDevice, err)
		}
	}
	if err != nil {
		return fmt.Errorf("disconnecting /dev/nbd%d: %w", index, err)
	}
	return nil
}

// Status returns the state of /dev/nbdN, or an error wrapping ErrNoDevice
// when the kernel has no such device. Backend, PID and SizeBytes come from
// sysfs.
func Status(ctx context.Context, index int) (Device, error) {
	if index < 0 {
		return Device{}, fmt.Errorf("nbd device %d: %w", index, ErrNoDevice)
	}
	devs, err := status(ctx, index)
	if err != nil {
		return Device{}, err
	}
	for _, d := range devs {
		if d.Index == index {
			return d, nil
		}
	}
	return Device{}, fmt.Errorf("nbd device %d: %w", index, ErrNoDevice)
}

// List returns every nbd device the kernel has, connected or not, by
// index. Without the nbd driver it returns an error wrapping ErrNoDriver
// (it does not load the driver).
func List(ctx context.Context) ([]Device, error) {
	devs, err := status(ctx, -1)
	if err != nil {
		return nil, err
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Index < devs[j].Index })
	return devs, nil
}

// status returns the devices NBD_CMD_STATUS reports for index (-1: all),
// with sysfs filled in.
func status(ctx context.Context, index int) ([]Device, error) {
	c, err := dial()
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	family, err := c.family(ctx)
	if err != nil {
		return nil, fmt.Errorf("getting nbd status: %w", err)
	}
	devs, err := c.status(ctx, family, index)
	if err != nil {
		return nil, err
	}
	for i := range devs {
		if err := readSysfs(sysBlock, procRoot, &devs[i]); err != nil {
			return nil, err
		}
	}
	return devs, nil
}

// status runs NBD_CMD_STATUS for index (-1: all).
func (c *conn) status(ctx context.Context, family uint16, index int) ([]Device, error) {
	seq := c.nextSeq()
	msgs, err := c.execute(ctx, statusRequest(family, seq, index), seq)
	if err != nil {
		return nil, fmt.Errorf("getting nbd status: %w", err)
	}
	devs := []Device{}
	for _, m := range msgs {
		ds, err := parseStatusReply(m.payload)
		if err != nil {
			return nil, err
		}
		devs = append(devs, ds...)
	}
	return devs, nil
}
