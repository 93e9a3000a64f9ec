// Package nbd serves block devices over the Network Block Device protocol
// (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md), so
// qemu, nbdkit's clients, libnbd tools, fio and the kernel can use a Basalt
// volume as a disk.
//
// # What it owns
//
// The fixed newstyle handshake (NBD_FLAG_FIXED_NEWSTYLE, NO_ZEROES; options
// EXPORT_NAME, GO, INFO with NBD_INFO_EXPORT, NAME, DESCRIPTION and
// BLOCK_SIZE, LIST, ABORT, STRUCTURED_REPLY, and LIST_META_CONTEXT and
// SET_META_CONTEXT for the one context base:allocation, which need
// structured replies first; everything else is answered NBD_REP_ERR_UNSUP)
// and the transmission phase: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES
// (NO_HOLE writes zeros, otherwise it discards), BLOCK_STATUS (with
// REQ_ONE), DISCONNECT, and the FUA flag (a Flush after the command).
// Exports are advertised with HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM,
// SEND_WRITE_ZEROES and CAN_MULTI_CONN (not SEND_DF: READ replies may be
// split into several chunks).
//
// Without structured replies every request gets a simple reply. With them,
// a READ is answered with NBD_REPLY_TYPE_OFFSET_DATA chunks and
// NBD_REPLY_TYPE_OFFSET_HOLE chunks for the parts the backend reports as
// holes (and that read as zeros), BLOCK_STATUS with one
// NBD_REPLY_TYPE_BLOCK_STATUS chunk (holes are NBD_STATE_HOLE|ZERO, data
// 0; at most 65536 extents), other commands with NBD_REPLY_TYPE_NONE and
// errors with NBD_REPLY_TYPE_ERROR; the last chunk carries
// NBD_REPLY_FLAG_DONE. Allocation comes from the optional Allocator
// capability of a backend; a backend without it is all data.
//
// Storage is behind the small Backend interface; *client.Volume satisfies
// it, and MemBackend (sparse memory, for tests) and FileBackend (a local
// file) are provided. Config.Exports maps names to backends (MapExports is
// a fixed map); an Exports that also implements Releaser is told when each
// backend it returned is no longer used (after NBD_OPT_INFO, or when the
// connection ends), which is how nbd/gateway holds a volume's writer lease
// exactly while a client is connected.
//
// Server.ServeTransmission serves one backend on a connection whose
// handshake happened elsewhere (or never): the kernel's nbd driver, handed
// one end of a socketpair by nbd/attach, speaks the transmission phase
// only, with simple replies and the flags TransmissionFlags returns.
//
// # What it does not own
//
// Durability and consistency are the backend's: the server acknowledges a
// write when Backend.WriteAt returns and a flush when Backend.Flush returns.
// It never closes a backend. Not implemented: extended headers, other meta
// contexts (qemu:dirty-bitmap), TLS and resize. Volumes, the daemon and
// kernel attach live in nbd/gateway, nbd/attach and nbd/kernel.
//
// # Errors on the wire
//
// A request outside the export gets NBD_EINVAL (NBD_ENOSPC for WRITE and
// WRITE_ZEROES, as the specification asks), a READ or WRITE longer than
// Config.MaxRequestBytes gets NBD_EOVERFLOW (the WRITE's data is read and
// dropped, so the connection stays in sync), an unknown command, an empty
// BLOCK_STATUS or one without base:allocation selected NBD_EINVAL, and a
// backend failure NBD_EIO (in a simple reply or an NBD_REPLY_TYPE_ERROR
// chunk). A bad request magic, a malformed handshake
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
