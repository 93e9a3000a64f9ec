// Package worker is the remote shuffle service's worker: it stores the
// batches that map tasks push for each (application, shuffle, partition,
// epoch) in append-only partition files on one or more data directories,
// copies them to the partition's replica worker, and, once the shuffle is
// committed, serves them back to readers. Worker implements the gRPC
// service rsspb.WorkerServer; RunDaemon is the basalt-rss-worker process
// around it (flags, YAML, /metrics, /healthz, gossip, clean SIGTERM).
//
// # Decommission
//
// StartDecommission (the Decommission RPC, `basalt rss worker
// decommission`) refuses new Push and Replicate streams with Unavailable
// while the streams already open finish, and keeps Commit, Fetch and
// DeleteShuffle working; the daemon gossips decommissioning so the master
// places nothing new here, and exits by itself once the master has
// deleted the data of every application (WaitDecommissioned). SIGTERM
// decommissions first and waits for the same, up to
// DaemonConfig.ShutdownDeadline.
//
// # What it owns
//
//   - Partition files: <dir>/apps/<app>/<shuffle>/<partition>-<epoch>.data,
//     each a sequence of batches, every batch a 32-byte header (magic, map,
//     attempt, seq, length, CRC-32C, reserved) followed by its data. New
//     files go to the data directory with the fewest open partition files.
//   - The index: a Pebble database in Dirs[0]/index holding, for every
//     committed partition file, the list of its batches (map, attempt,
//     seq, offset, length, CRC), and a marker per committed shuffle. Only
//     committed partitions are indexed, so a partition file without an
//     index entry is garbage: New deletes such files (left by a crash or a
//     stop before commit).
//   - Admission: bytes received but not yet acknowledged count against
//     Config.MemoryLimitBytes, and each application's against its share,
//     Config.AppMemoryLimitBytes (off by default); a batch that does not
//     fit is refused with ResourceExhausted and the client backs off.
//
// It does not authenticate (the master checks tokens; the worker only
// requires the application id in the "basalt-rss-app" metadata), decide
// placement, track map attempts or count batches: readers filter by the
// winners they pass to Fetch and check counts themselves.
//
// # Durability
//
// A pushed batch is acknowledged when it has been written (write(2), the
// OS page cache, not fsynced) to the partition file on this worker and
// acknowledged the same way by the replica, if the push named one. Writes
// are batched per partition file: a file's buffer is written when it holds
// Config.FlushBytes or Config.FlushInterval after its oldest batch arrived,
// so an acknowledgement can take up to FlushInterval and clients keep
// several batches in flight. Commit writes what is buffered, truncates the
// file to its last whole batch, fsyncs and closes it, syncs its
// directories and then records its index in Pebble with a synced write: a
// committed partition survives a crash of the machine. An acknowledged
// but uncommitted batch lives in this worker's page cache only until the
// worker stops: New deletes uncommitted files, so after a restart the
// copy on the replica is the one left, and Fetch of that partition here
// is NotFound (as it is for a partition epoch that never received a
// batch; readers then use the other copy, or count zero batches). A
// failed write (a full disk: ResourceExhausted) fails the batches of that
// write and cuts the file back to the last whole batch, so no torn batch
// is ever indexed; any other write or fsync error marks the file lost:
// Commit leaves it out and Fetch reports DataLoss for it.
//
// # Concurrency and I/O
//
// All methods are safe for concurrent use. Each Push or Replicate stream
// has a receiving goroutine (which appends, forwards to the replica over
// one Replicate stream per replica address, and writes a file whose
// buffer is full) and the handler's goroutine, which sends acknowledgements
// in order; appending batch N+1 does not wait for the replica's
// acknowledgement of batch N. Timed flushes run on timer goroutines.
// Commit and DeleteShuffle are serialized with each other. File and
// Pebble I/O happens in those goroutines and in Fetch; the filesystem is
// Config.FS (a vfs.FS), so tests inject full disks and crashes.
package worker
