// Package client is the Go client of Basalt's remote shuffle service: the
// semantics the Spark plugin mirrors. An App registers with the master (or
// joins an application registered elsewhere with its token); a Writer
// pushes one map attempt's records, partitioned, in batches to each
// partition's primary worker and reports the attempt's end with its batch
// counts; a Reader fetches a committed partition.
//
// Guarantees: a batch counts only once the primary and its replica both
// have it (the worker acknowledges then); a failed location is replaced by
// a new epoch from the master (Revive) and the unacknowledged batches are
// pushed there again, so a batch may exist twice, which the reader drops
// by (map, attempt, seq). The reader keeps only each map's winning attempt
// and checks that exactly the winner's reported number of batches arrived
// for the partition: a missing batch is an error naming the partition,
// never a silent short read. CRC-32C is checked by the worker on push and
// on fetch, and again here.
//
// Records are framed inside a batch as uvarint length + bytes; a batch's
// data starts with one codec byte (0 none, 1 zstd, 2 LZ4 block preceded by
// the uncompressed length as a uvarint).
//
// Concurrency: an App is safe for concurrent use; a Writer or Reader
// belongs to one goroutine. Every blocking call takes a ctx.
package client
