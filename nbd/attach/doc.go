// Package attach maps a Basalt volume to a Linux block device, /dev/nbdN,
// the way rbd-nbd and curve-nbd do: the volume is opened in this process as
// its writer, an NBD server (package nbd, transmission phase only) serves it
// on one end of each of a few socketpairs, and the other ends are handed to
// the kernel's nbd driver over generic netlink (package nbd/kernel). There
// is no TCP hop and no handshake: the kernel talks straight to the server
// in this process, which talks to the chunkservers.
//
// The process that called Attach must live as long as the device: when it
// dies, the kernel's sockets close and I/O on the device fails with EIO
// (after Options.DeadConnTimeout), and the volume's writer lease expires so
// another host can take the volume over. `basalt nbd attach` therefore
// keeps a background process per device (or stays in the foreground with
// --foreground) and `basalt nbd detach` disconnects the device, which ends
// that process after its last request and releases the writer lease.
//
// What it does not do: reattach a new process to a device whose server
// died (NBD_CMD_RECONFIGURE), resize a mapped device, or read-only maps.
// Attach needs CAP_SYS_ADMIN and the nbd driver (`modprobe nbd`); without
// the driver it fails with kernel.ErrNoDriver.
package attach
