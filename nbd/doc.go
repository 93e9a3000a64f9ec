// Package nbd serves block devices over the Network Block Device protocol
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md), so
// qemu, nbdkit's clients, libnbd tools, fio and the kernel can use a Basalt
// volume as a disk.
//
// # What it owns
//
// The fixed newstyle handshake (NBD_FLAG_FIXED_NEWSTYLE, NO_ZEROES; options
// EXPORT_NAME, GO, INFO with NBD_INFO_EXPORT, NAME, DESCRIPTION and
// BLOCK_SIZE, LIST and ABORT; everything else, including STRUCTURED_REPLY
// and SET_META_CONTEXT, is answered NBD_REP_ERR_UNSUP) and the transmission
// phase with simple replies: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES (NO_HOLE
// writes zeros, otherwise it discards), DISCONNECT, and the FUA flag (a
// Flush after the command). Exports are advertised with HAS_FLAGS,
// SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES and CAN_MULTI_CONN.
//
// Storage is behind the small Backend interface; *client.Volume satisfies
// it, and MemBackend (sparse memory, for tests) and FileBackend (a local
// file) are provided. Config.Exports maps names to backends (MapExports is
// a fixed map).
//
// # What it does not own
//
// Durability and consistency are the backend's: the server acknowledges a
// write when Backend.WriteAt returns and a flush when Backend.Flush returns.
// It never closes a backend. Not implemented yet: structured replies,
// block status (base:allocation), TLS, resize, and attaching an export to
// the kernel's nbd driver.
//
// # Errors on the wire
//
// A request outside the export gets NBD_EINVAL (NBD_ENOSPC for WRITE and
// WRITE_ZEROES, as the specification asks), a READ or WRITE longer than
// Config.MaxRequestBytes gets NBD_EOVERFLOW (the WRITE's data is read and
// dropped, so the connection stays in sync), an unknown command NBD_EINVAL,
// and a backend failure NBD_EIO. A bad request magic, a malformed handshake
// or an unknown name in NBD_OPT_EXPORT_NAME close that connection only.
//
// # Concurrency and I/O
//
// Server.Serve runs a goroutine per connection; each connection reads
// requests in order and runs each in its own goroutine (at most
// Config.MaxInFlight at once), writing replies under a mutex in completion
// order, matched by cookie. Backends must therefore accept concurrent
// calls. When Serve's context ends, the listener and every connection are
// closed and Serve waits for all goroutines it started.
package nbd
