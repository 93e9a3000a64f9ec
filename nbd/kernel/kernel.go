package kernel

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrNoDriver means the running kernel has no nbd driver: the generic
// netlink family "nbd" does not exist (Connect tries `modprobe nbd` first).
var ErrNoDriver = errors.New("nbd/kernel: the kernel has no nbd driver (generic netlink family \"nbd\" not found; load it with `modprobe nbd`)")

// ErrDeviceBusy means the requested /dev/nbdN is already connected.
var ErrDeviceBusy = errors.New("nbd/kernel: nbd device already in use")

// ErrNoDevice means the kernel has no nbd device with the requested index.
var ErrNoDevice = errors.New("nbd/kernel: no such nbd device")

// ErrInvalidOptions is wrapped by ConnectOptions.Validate's errors.
var ErrInvalidOptions = errors.New("nbd/kernel: invalid connect options")

// NBD transmission flags (linux/nbd.h, and the NBD protocol's
// "transmission flags"), for ConnectOptions.Flags. The kernel acts on
// HAS_FLAGS, READ_ONLY, SEND_FLUSH, SEND_FUA, ROTATIONAL, SEND_TRIM and
// CAN_MULTI_CONN; a 6.1 kernel ignores SEND_WRITE_ZEROES.
const (
	FlagHasFlags        uint64 = 1 << 0
	FlagReadOnly        uint64 = 1 << 1
	FlagSendFlush       uint64 = 1 << 2
	FlagSendFUA         uint64 = 1 << 3
	FlagRotational      uint64 = 1 << 4
	FlagSendTrim        uint64 = 1 << 5
	FlagSendWriteZeroes uint64 = 1 << 6
	FlagCanMultiConn    uint64 = 1 << 8
)

// DefaultBlockSize is the logical block size used when
// ConnectOptions.BlockSize is zero.
const DefaultBlockSize = 4096

// ConnectOptions describe one NBD_CMD_CONNECT.
type ConnectOptions struct {
	// Index is the N of /dev/nbdN to connect, or -1 to let the kernel pick
	// an unused device (creating one when all are in use). Zero means
	// /dev/nbd0; DefaultConnectOptions sets -1.
	Index int
	// Sockets are connected stream sockets whose peers serve the NBD
	// transmission phase (the kernel does no handshake). The kernel takes
	// its own reference to each; the caller may close them once Connect
	// returns. With more than one, Flags should include FlagCanMultiConn.
	// Connect uses their Fd, which leaves them in blocking mode. Required.
	Sockets []*os.File
	// SizeBytes is the device size in bytes. Required.
	SizeBytes uint64
	// BlockSize is the logical block size in bytes: a power of two from
	// 512 to the page size. Zero means DefaultBlockSize.
	BlockSize uint64
	// Flags are the transmission flags the server would advertise
	// (FlagHasFlags|FlagSendFlush|...). Zero means none: no flushes, no
	// FUA, no discard, writable.
	Flags uint64
	// Timeout is the I/O timeout: a request the server has not answered in
	// this time fails the connection. It is sent in whole seconds, rounded
	// up. Zero means none: the kernel waits for the server forever and
	// logs "possible stuck request" every 30 s.
	Timeout time.Duration
	// DeadConnTimeout is how long requests wait for a dead connection to
	// be replaced (NBD_CMD_RECONFIGURE) before they fail with EIO; whole
	// seconds, rounded up. Zero means they fail at once.
	DeadConnTimeout time.Duration
	// Backend identifies what the device serves; the kernel shows it in
	// /sys/block/nbdN/backend. Empty means none.
	Backend string
	// DisconnectOnClose asks the kernel to disconnect the device when the
	// last opener of /dev/nbdN closes it (NBD_CFLAG_DISCONNECT_ON_CLOSE).
	DisconnectOnClose bool
}

// DefaultConnectOptions returns options that let the kernel pick the
// device, with DefaultBlockSize and a 30 s I/O timeout. Sockets and
// SizeBytes remain to be set.
func DefaultConnectOptions() ConnectOptions {
	return ConnectOptions{Index: -1, BlockSize: DefaultBlockSize, Timeout: 30 * time.Second}
}

// Validate reports whether o can be sent to the kernel, checking what the
// kernel would otherwise reject with a bare EINVAL.
func (o ConnectOptions) Validate() error {
	bs := o.withDefaults().BlockSize
	switch {
	case o.Index < -1:
		return fmt.Errorf("%w: index %d (want -1 or a device number)", ErrInvalidOptions, o.Index)
	case len(o.Sockets) == 0:
		return fmt.Errorf("%w: no sockets", ErrInvalidOptions)
	case o.SizeBytes == 0:
		return fmt.Errorf("%w: size is zero", ErrInvalidOptions)
	case bs < 512 || bs > uint64(os.Getpagesize()) || bs&(bs-1) != 0:
		return fmt.Errorf("%w: block size %d (want a power of two from 512 to %d)", ErrInvalidOptions, bs, os.Getpagesize())
	case o.Timeout < 0 || o.DeadConnTimeout < 0:
		return fmt.Errorf("%w: negative timeout", ErrInvalidOptions)
	}
	for i, s := range o.Sockets {
		if s == nil {
			return fmt.Errorf("%w: socket %d is nil", ErrInvalidOptions, i)
		}
	}
	return nil
}

// withDefaults returns o with zero fields replaced by their defaults.
func (o ConnectOptions) withDefaults() ConnectOptions {
	if o.BlockSize == 0 {
		o.BlockSize = DefaultBlockSize
	}
	return o
}

// ceilSeconds returns d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) uint64 {
	return uint64((d + time.Second - 1) / time.Second)
}

// Device is the state of one kernel nbd device.
type Device struct {
	// Index is the N of /dev/nbdN.
	Index int
	// Connected reports whether the device has a configuration: it was
	// connected and is not yet fully disconnected (the kernel's
	// NBD_DEVICE_CONNECTED). It stays true after the server's connection
	// dies, until Disconnect or the last opener closing the device.
	Connected bool
	// Backend is /sys/block/nbdN/backend: ConnectOptions.Backend of the
	// current connection, or "" (also when the file is absent).
	Backend string
	// PID is the process that connected the device, or 0 when not
	// connected. The kernel's /sys/block/nbdN/pid names the task (thread)
	// that sent NBD_CMD_CONNECT, in a Go program rarely the main thread;
	// Status maps it to its process through /proc/PID/status (Tgid), and
	// reports the thread id when that thread no longer exists.
	PID int
	// SizeBytes is the device size from /sys/block/nbdN/size; 0 when not
	// connected.
	SizeBytes uint64
}

// Path returns the device node, /dev/nbdN.
func (d Device) Path() string { return fmt.Sprintf("/dev/nbd%d", d.Index) }

// NetlinkError is a request the kernel refused. It unwraps to its Errno, so
// errors.Is(err, syscall.EBUSY) and errors.Is(err, os.ErrPermission) work.
type NetlinkError struct {
	// Errno is the error the kernel returned.
	Errno syscall.Errno
	// Message is the kernel's extended ack message, or "". The nbd driver
	// rarely sets one: its reasons go to the kernel log (dmesg).
	Message string
}

func (e *NetlinkError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("netlink: %s: %s", e.Errno.Error(), e.Message)
	}
	return "netlink: " + e.Errno.Error()
}

// Unwrap returns e.Errno.
func (e *NetlinkError) Unwrap() error { return e.Errno }
