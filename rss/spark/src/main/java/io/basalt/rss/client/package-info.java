/**
 * A Java client of the Basalt remote shuffle service's protocol (proto/basalt/rss/v1/rss.proto),
 * the counterpart of the Go client rss/client, with no Spark in it.
 *
 * <p>It owns: the connection to a list of masters that follows the leader ({@code MasterClient});
 * an application's registration, lease heartbeats and commit calls ({@link
 * io.basalt.rss.client.RssApp}); one map attempt's pushes with in-flight bounds, coalescing, revive
 * and re-push ({@link io.basalt.rss.client.MapWriter}); one partition's exact read with replica
 * fallback ({@link io.basalt.rss.client.PartitionReader}); and the batch format ({@link
 * io.basalt.rss.client.Codec}, byte-compatible with the Go client: rss/client/testdata/batches.json).
 *
 * <p>It does not decide which attempt of a map counts (the caller names it) nor persist anything:
 * durability is the workers' (a batch is acknowledged once on the primary and the replica,
 * fsynced at commit). Writers and readers belong to one thread each; RssApp is thread-safe.
 * Every retry loop ends at the configured retry deadline.
 */
package io.basalt.rss.client;
