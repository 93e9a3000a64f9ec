// Package gateway exports Basalt volumes over NBD: the export name is the
// volume name. It owns the basalt-nbd daemon (TCP and unix listeners,
// /metrics, /healthz, YAML+flags config, clean SIGTERM) and Exports, the
// nbd.Exports that the daemon, `basalt playground` and `basalt nbd attach`
// share.
//
// A volume is opened as its writer when the first NBD connection selects it
// and closed when the last one ends, so the volume's writer lease (one
// writer per volume, enforced by the MDS) is held exactly while a client is
// connected: a second gateway, or a `basalt nbd attach` elsewhere, is
// refused with client.ErrWriterExists until then. All connections to one
// volume share one client.Volume, and every write it acknowledges is
// already durable on a quorum of replicas, which is why the server may
// advertise NBD_FLAG_CAN_MULTI_CONN.
//
// The package does no I/O of its own beyond the listeners: reads and writes
// go through package client, the protocol through package nbd. Exports is
// safe for concurrent use.
package gateway
