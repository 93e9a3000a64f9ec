// Package kernel connects NBD exports to the Linux kernel's nbd driver
// (/dev/nbdN) through its generic netlink family "nbd"
// (include/uapi/linux/nbd-netlink.h), the interface rbd-nbd, curve-nbd and
// nbd-client -netlink use: Connect hands the kernel already-connected
// sockets with NBD_CMD_CONNECT, Disconnect sends NBD_CMD_DISCONNECT, and
// Status and List send NBD_CMD_STATUS and add what sysfs shows
// (/sys/block/nbdN/backend, pid and size).
//
// # What it owns
//
// The netlink messages (pure encoding and decoding in netlink.go, tested
// on any OS), resolving the family (running `modprobe nbd` once when
// Connect finds it missing), and turning the kernel's refusals into
// errors: ErrNoDriver, ErrDeviceBusy, ErrNoDevice, or a *NetlinkError
// carrying the errno.
//
// # What it does not own
//
// The NBD protocol. The kernel does no handshake: the sockets' peers must
// already be in the transmission phase (with a socketpair, an in-process
// nbd.Server.ServeTransmission), and ConnectOptions.Flags must say what
// they serve. It does not create, watch or reconnect sockets (no
// NBD_CMD_RECONFIGURE, no NBD_CMD_LINK_DEAD multicast), and does not use
// the older ioctl interface. A connected device outlives the calling
// process: it stays until Disconnect, until its last opener closes it with
// DisconnectOnClose, or until the module is unloaded; when the server side
// dies, I/O fails with EIO after ConnectOptions.DeadConnTimeout (or
// Timeout for a server that stops answering) but the device remains
// connected until Disconnect.
//
// # Concurrency and I/O
//
// Every call opens its own NETLINK_GENERIC socket, so calls may run
// concurrently. The kernel runs each request synchronously inside the
// sending system call (which is also why /sys/block/nbdN/pid names the
// sending thread), so a call blocks until the driver is done, which for
// Disconnect includes waiting for its receive threads. ctx is checked
// before each request and cannot interrupt one the kernel is running: a
// call never abandons a request the kernel may have carried out. Connect
// and Disconnect need CAP_SYS_ADMIN. Off Linux every call returns an error
// wrapping errors.ErrUnsupported.
package kernel
