package io.basalt.rss.client;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import io.basalt.rss.proto.Batch;
import io.basalt.rss.proto.MapEndRequest;
import io.basalt.rss.proto.MapEndResponse;
import io.basalt.rss.proto.PartitionLocation;
import io.basalt.rss.proto.PushRequest;
import io.basalt.rss.proto.PushResponse;
import io.basalt.rss.proto.ReviveRequest;
import io.basalt.rss.proto.ShuffleLayout;
import io.basalt.rss.proto.WorkerRef;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.BooleanSupplier;
import java.util.logging.Logger;
import java.util.zip.CRC32C;

/**
 * Pushes the batches of one map attempt, as the Go client's Writer does: one Push stream per
 * primary worker, acknowledged in order once the batch is on the primary and the replica; at most
 * maxInFlightBytes unacknowledged; the unacknowledged batches of a failed stream are moved to a
 * new location of their partition (Revive) and pushed again, with jittered backoff, until the
 * retry deadline. {@link #push} and {@link #close} belong to one thread.
 */
public final class MapWriter {
  private static final Logger LOG = Logger.getLogger(MapWriter.class.getName());

  private final RssApp app;
  private final int shuffle;
  private final int mapIndex;
  private final int attempt;
  private final PartitionLocation[] locs;
  private final int[] seqs;
  private final long[] stored;
  private final Map<String, Stream> streams = new HashMap<>();
  private final CRC32C crc = new CRC32C();
  // Guarded by this: inflight, failStreak and every Stream's fields.
  private long inflight;
  private int failStreak;

  MapWriter(RssApp app, int shuffle, ShuffleLayout layout, int numPartitions, int mapIndex, int attempt) {
    this.app = app;
    this.shuffle = shuffle;
    this.mapIndex = mapIndex;
    this.attempt = attempt;
    locs = new PartitionLocation[numPartitions];
    seqs = new int[numPartitions];
    stored = new long[numPartitions];
    for (PartitionLocation l : layout.getLocationsList()) {
      int p = l.getPartition();
      if (p >= 0 && p < numPartitions && (locs[p] == null || l.getEpoch() > locs[p].getEpoch())) {
        locs[p] = l;
      }
    }
  }

  public int numPartitions() {
    return locs.length;
  }

  /** Bytes stored (compressed batch data) per partition so far. */
  public long[] storedBytes() {
    return stored.clone();
  }

  /**
   * Pushes rec[off, off+len) to partition p as one record in one batch, and returns the batch's
   * stored size.
   */
  public int push(int p, byte[] rec, int off, int len) throws IOException {
    if (p < 0 || p >= locs.length) {
      throw new IllegalArgumentException("partition " + p + " of " + locs.length);
    }
    byte[] data = app.config().codec().encodeOne(rec, off, len);
    crc.reset();
    crc.update(data);
    Pending pb = new Pending(p, seqs[p]++, (int) crc.getValue(), UnsafeByteOperations.unsafeWrap(data));
    stored[p] += data.length;
    send(pb);
    return data.length;
  }

  /** A batch sent but not acknowledged. */
  private static final class Pending {
    final int partition;
    final int seq;
    final int crc;
    final ByteString data;
    int epoch;

    Pending(int partition, int seq, int crc, ByteString data) {
      this.partition = partition;
      this.seq = seq;
      this.crc = crc;
      this.data = data;
    }

    int size() {
      return data.size();
    }
  }

  /**
   * Batches a stream has not sent yet go out as one request once they reach this many bytes or
   * batches (or when the writer waits): a wide shuffle pushes thousands of small batches.
   */
  static final int COALESCE_BYTES = 1 << 20;

  static final int COALESCE_BATCHES = 512;

  /**
   * One Push stream to a primary worker, for the partitions whose replica is the same worker (a
   * request names one replica). Its fields are guarded by the writer, except pending, which only
   * the writer's thread uses.
   */
  private final class Stream implements ClientResponseObserver<PushRequest, PushResponse> {
    final String addr;
    final WorkerRef replica; // null: no replica
    final ArrayDeque<Pending> sent = new ArrayDeque<>();
    PushRequest.Builder pending;
    long pendingBytes;
    ClientCallStreamObserver<PushRequest> call;
    long acked;
    Throwable failed;
    boolean done;

    Stream(String addr, WorkerRef replica) {
      this.addr = addr;
      this.replica = replica;
    }

    /** Sends the pending batches as one request. */
    void flush() {
      if (pending == null || pending.getBatchesCount() == 0) {
        return;
      }
      PushRequest req = pending.build();
      pending = null;
      pendingBytes = 0;
      try {
        call.onNext(req);
      } catch (RuntimeException e) {
        onError(e);
      }
    }

    @Override
    public void beforeStart(ClientCallStreamObserver<PushRequest> call) {
      this.call = call;
    }

    @Override
    public void onNext(PushResponse r) {
      synchronized (MapWriter.this) {
        long n = Math.min(Math.max(r.getAcked() - acked, 0), sent.size());
        for (long i = 0; i < n; i++) {
          inflight -= sent.removeFirst().size();
        }
        acked = r.getAcked();
        if (n > 0) {
          failStreak = 0;
        }
        MapWriter.this.notifyAll();
      }
    }

    @Override
    public void onError(Throwable t) {
      synchronized (MapWriter.this) {
        if (failed == null) {
          failed = t;
        }
        done = true;
        MapWriter.this.notifyAll();
      }
    }

    @Override
    public void onCompleted() {
      synchronized (MapWriter.this) {
        if (failed == null && !sent.isEmpty()) {
          failed = new IOException("push stream to " + addr + " ended with " + sent.size() + " batches unacknowledged");
        }
        done = true;
        MapWriter.this.notifyAll();
      }
    }
  }

  private long deadline() {
    return System.nanoTime() + app.config().retryDeadline().toNanos();
  }

  /** Pushes one batch to its partition's current primary, waiting while too much is in flight. */
  private void send(Pending pb) throws IOException {
    long deadline = deadline();
    while (true) {
      recover(deadline);
      if (room(pb.size())) {
        break;
      }
      flushAll();
      await(deadline, () -> room(pb.size()));
    }
    PartitionLocation loc = locs[pb.partition];
    if (loc == null) {
      throw new IOException("partition " + pb.partition + " of shuffle " + shuffle + " has no location");
    }
    pb.epoch = loc.getEpoch();
    Stream s = stream(loc);
    boolean failed;
    synchronized (this) {
      inflight += pb.size();
      s.sent.addLast(pb);
      failed = s.failed != null;
    }
    if (failed) {
      return; // recover moves it on
    }
    if (s.pending == null) {
      s.pending = PushRequest.newBuilder();
      if (s.replica != null) {
        s.pending.setReplica(s.replica);
      }
    }
    s.pending.addBatches(Batch.newBuilder()
        .setShuffleId(shuffle).setPartition(pb.partition).setEpoch(pb.epoch).setMapIndex(mapIndex)
        .setAttempt(attempt).setSeq(pb.seq).setCrc32C(pb.crc).setData(pb.data));
    s.pendingBytes += pb.size();
    if (s.pendingBytes >= COALESCE_BYTES || s.pending.getBatchesCount() >= COALESCE_BATCHES) {
      s.flush();
    }
  }

  /** Returns the stream to loc's primary for loc's replica, opening it if needed. */
  private Stream stream(PartitionLocation loc) {
    String addr = loc.getPrimary().getAddr();
    WorkerRef replica = loc.hasReplica() ? loc.getReplica() : null;
    String key = addr + "|" + (replica == null ? "" : replica.getAddr());
    Stream s = streams.get(key);
    if (s == null) {
      s = new Stream(addr, replica);
      streams.put(key, s);
      app.worker(addr).push(s);
    }
    return s;
  }

  /** Sends every stream's pending batches. */
  private void flushAll() {
    for (Stream s : List.copyOf(streams.values())) {
      s.flush();
    }
  }

  /** Reports whether a batch of size bytes fits in the in-flight bound. */
  private synchronized boolean room(long size) {
    return inflight == 0 || inflight + size <= app.config().maxInFlightBytes();
  }

  /** Reports whether every batch sent is acknowledged. */
  private synchronized boolean allAcked() {
    boolean empty = inflight == 0;
    for (Stream s : streams.values()) {
      empty &= s.sent.isEmpty();
    }
    return empty;
  }

  /**
   * Waits until done holds or a stream failed, up to the deadline. Both are checked under the
   * writer's lock, which the streams' callbacks take before they notify, so no wakeup is missed.
   */
  private synchronized void await(long deadline, BooleanSupplier done) throws IOException {
    while (!done.getAsBoolean() && streams.values().stream().noneMatch(s -> s.failed != null)) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        throw new IOException("pushes of map " + mapIndex + " attempt " + attempt + " not acknowledged before the retry deadline");
      }
      try {
        wait(Math.max(1, left / 1_000_000));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while pushing", e);
      }
    }
  }

  /** Moves the unacknowledged batches of failed streams to new locations and pushes them again. */
  private void recover(long deadline) throws IOException {
    while (true) {
      List<Failed> failed = takeFailed();
      if (failed.isEmpty()) {
        return;
      }
      if (System.nanoTime() - deadline > 0) {
        throw new IOException("push of map " + mapIndex + " attempt " + attempt + " kept failing", failed.get(0).cause);
      }
      int streak;
      synchronized (this) {
        streak = failStreak++;
      }
      backoff(streak);
      for (Failed f : failed) {
        LOG.info("rss: push to " + f.addr + " failed (" + f.cause + "); moving " + f.batches.size() + " batches on");
        for (Pending pb : f.batches) {
          revive(pb);
        }
        for (Pending pb : f.batches) {
          send(pb);
        }
      }
    }
  }

  private record Failed(String addr, Throwable cause, List<Pending> batches) {}

  /** Removes the failed streams and returns their unacknowledged batches. */
  private synchronized List<Failed> takeFailed() {
    List<Failed> out = new ArrayList<>();
    for (Iterator<Stream> it = streams.values().iterator(); it.hasNext(); ) {
      Stream s = it.next();
      if (s.failed == null) {
        continue;
      }
      it.remove();
      List<Pending> batches = new ArrayList<>(s.sent);
      s.sent.clear();
      for (Pending pb : batches) {
        inflight -= pb.size();
      }
      if (!s.done && s.call != null) {
        s.call.cancel("moving on", null);
      }
      out.add(new Failed(s.addr, s.failed, batches));
    }
    return out;
  }

  /** Makes sure the batch's partition has a location newer than the epoch it failed in. */
  private void revive(Pending pb) {
    PartitionLocation cur = locs[pb.partition];
    if (cur != null && cur.getEpoch() > pb.epoch) {
      return;
    }
    locs[pb.partition] = app.master().call(s -> s.revive(ReviveRequest.newBuilder()
        .setShuffleId(shuffle).setPartition(pb.partition).setFailedEpoch(pb.epoch).build()));
  }

  /** Sleeps a jittered, growing interval: 50 ms doubling to 2 s. */
  static void backoff(int attempt) {
    long d = Math.min(50L << Math.min(attempt, 6), 2000);
    MasterClient.sleep(d / 2 + ThreadLocalRandom.current().nextLong(d / 2 + 1));
  }

  /**
   * What the master answered to the attempt's end.
   *
   * @param won whether this attempt is the one readers read
   * @param winningAttempt the attempt that won
   */
  public record MapEnd(boolean won, int winningAttempt) {}

  /**
   * Waits until every batch is acknowledged by its primary and replica, then reports the
   * attempt's end with its batch counts. The streams are closed either way.
   */
  public MapEnd close() throws IOException {
    try {
      drain();
      MapEndRequest.Builder req = MapEndRequest.newBuilder().setShuffleId(shuffle).setMapIndex(mapIndex).setAttempt(attempt);
      for (int n : seqs) {
        req.addBatches(n);
      }
      MapEndResponse r = app.master().call(s -> s.mapEnd(req.build()));
      return new MapEnd(r.getWon(), r.getWinningAttempt());
    } finally {
      release(false);
    }
  }

  /** Stops the attempt without reporting its end: another attempt will win. */
  public void abort() {
    release(true);
  }

  private void drain() throws IOException {
    long deadline = deadline();
    while (true) {
      recover(deadline);
      if (allAcked()) {
        return;
      }
      flushAll();
      await(deadline, this::allAcked);
    }
  }

  /** Half-closes the streams and waits (up to 5 s) for the workers to end them; cancels the rest. */
  private void release(boolean cancel) {
    long deadline = System.nanoTime() + 5_000_000_000L;
    synchronized (this) {
      for (Stream s : streams.values()) {
        if (s.done) {
          continue;
        }
        if (cancel) {
          s.call.cancel("map attempt aborted", null);
        } else {
          try {
            s.call.onCompleted();
          } catch (RuntimeException e) {
            s.call.cancel("closing", e);
          }
        }
      }
      for (Stream s : streams.values()) {
        while (!s.done && System.nanoTime() - deadline < 0) {
          try {
            wait(100);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            break;
          }
        }
        if (!s.done) {
          s.call.cancel("closing", null);
        }
      }
      streams.clear();
    }
  }
}
