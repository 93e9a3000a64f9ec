package io.basalt.rss.client;

import io.basalt.rss.proto.Batch;
import io.basalt.rss.proto.FetchRequest;
import io.basalt.rss.proto.FetchResponse;
import io.basalt.rss.proto.MapWinner;
import io.basalt.rss.proto.PartitionLocation;
import io.basalt.rss.proto.ShuffleState;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.logging.Logger;
import java.util.zip.CRC32C;

/**
 * Reads one partition of a committed shuffle, as the Go client's Reader does: every epoch of the
 * partition in order, each from its primary or, when that fails, its replica (batches already read
 * are skipped); only the batches of the given attempt of each given map, each once; every batch's
 * CRC checked; and at the end exactly the number of batches each attempt reported at its end, so a
 * missing batch is a {@link DataLostException}, never a short read. {@link #next} belongs to one
 * thread.
 */
public final class PartitionReader implements AutoCloseable {
  private static final Logger LOG = Logger.getLogger(PartitionReader.class.getName());

  private final RssApp app;
  private final int shuffle;
  private final int partition;
  private final List<MapWinner> winners = new ArrayList<>();
  private final Map<Integer, Integer> winner = new HashMap<>(); // map -> the attempt read
  private final Map<Integer, Integer> expected = new HashMap<>(); // map -> batches here
  private final Map<Integer, Integer> got = new HashMap<>();
  private final Set<Long> seen = new HashSet<>();
  private final List<PartitionLocation> locs = new ArrayList<>();
  private final CRC32C crc = new CRC32C();
  private int next;
  private Fetch cur;
  private final ArrayDeque<Batch> pending = new ArrayDeque<>();
  private byte[] records;
  private int pos;
  private long bytes;
  private long stored;
  private long batches;

  /**
   * Opens partition of the committed shuffle st for the given attempt of each given map (map
   * index to attempt): Spark's map output tracker says which attempt of a map counts. An attempt
   * the master has no end for is a {@link DataLostException}.
   */
  public PartitionReader(RssApp app, ShuffleState st, int partition, Map<Integer, Integer> attempts) throws DataLostException {
    this.app = app;
    this.shuffle = st.getShuffleId();
    this.partition = partition;
    Map<Long, MapWinner> ended = new HashMap<>();
    for (MapWinner w : st.getWinnersList()) {
      ended.put(pairKey(w.getMapIndex(), w.getAttempt()), w);
    }
    for (MapWinner w : st.getOtherAttemptsList()) {
      ended.put(pairKey(w.getMapIndex(), w.getAttempt()), w);
    }
    for (Map.Entry<Integer, Integer> e : attempts.entrySet()) {
      MapWinner w = ended.get(pairKey(e.getKey(), e.getValue()));
      if (w == null) {
        throw lost("map " + e.getKey() + " attempt " + e.getValue() + " never reported its end to the master", null);
      }
      winners.add(w);
      winner.put(w.getMapIndex(), w.getAttempt());
      expected.put(w.getMapIndex(), partition < w.getBatchesCount() ? w.getBatches(partition) : 0);
    }
    winners.sort(Comparator.comparingInt(MapWinner::getMapIndex));
    for (PartitionLocation l : st.getLocationsList()) {
      if (l.getPartition() == partition) {
        locs.add(l);
      }
    }
    locs.sort(Comparator.comparingInt(PartitionLocation::getEpoch));
    if (expectedBatches() == 0) {
      locs.clear(); // nothing to read: no fetch at all
    }
  }

  /** Packs two ints (map and attempt, or map and seq) into one key. */
  private static long pairKey(int map, int second) {
    return ((long) map << 32) | (second & 0xffffffffL);
  }

  /** The number of batches this read must return. */
  public long expectedBatches() {
    long n = 0;
    for (int b : expected.values()) {
      n += b;
    }
    return n;
  }

  /** Record bytes returned so far. */
  public long bytesRead() {
    return bytes;
  }

  /** Stored (compressed) bytes of the batches read so far. */
  public long storedBytesRead() {
    return stored;
  }

  /** Batches read so far. */
  public long batchesRead() {
    return batches;
  }

  /** Starts fetching (the first epoch's copy), so the data is on its way before it is read. */
  public void start() throws DataLostException {
    if (cur == null && next == 0 && !locs.isEmpty()) {
      fill();
    }
  }

  /**
   * Returns the next record, or null after the last one. The buffer is a view of the batch's
   * decoded records: valid until the next call.
   */
  public ByteBuffer next() throws DataLostException {
    while (records == null || pos >= records.length) {
      if (!advance()) {
        return null;
      }
    }
    long[] n = Varint.get(records, pos);
    if (n == null || records.length - n[1] < n[0]) {
      throw lost("malformed record framing", null);
    }
    int start = (int) n[1];
    pos = start + (int) n[0];
    bytes += n[0];
    return ByteBuffer.wrap(records, start, (int) n[0]);
  }

  /** Loads the next new batch of a winning attempt into records; false at the end. */
  private boolean advance() throws DataLostException {
    while (pending.isEmpty()) {
      if (!fill()) {
        return false;
      }
    }
    Batch b = pending.removeFirst();
    long key = pairKey(b.getMapIndex(), b.getSeq()); // one attempt per map is read
    Integer w = winner.get(b.getMapIndex());
    if (w == null || w != b.getAttempt() || seen.contains(key)) {
      return true; // a losing attempt, or a re-pushed duplicate
    }
    crc.reset();
    b.getData().asReadOnlyByteBufferList().forEach(crc::update);
    if ((int) crc.getValue() != b.getCrc32C()) {
      failCopy(new IOException("CRC mismatch in map " + b.getMapIndex() + " attempt " + b.getAttempt() + " batch " + b.getSeq()), true);
      return true;
    }
    try {
      records = Codec.decode(b.getData().toByteArray());
    } catch (IOException e) {
      throw lost("map " + b.getMapIndex() + " batch " + b.getSeq(), e);
    }
    pos = 0;
    seen.add(key);
    got.merge(b.getMapIndex(), 1, Integer::sum);
    batches++;
    stored += b.getData().size();
    return true;
  }

  /** The fetch of one epoch from one of its copies. */
  private static final class Fetch {
    final PartitionLocation loc;
    boolean replica;
    Iterator<FetchResponse> stream;
    Context.CancellableContext ctx;
    int tries;
    final Map<Boolean, Throwable> bad = new HashMap<>();
    long deadline;

    Fetch(PartitionLocation loc) {
      this.loc = loc;
    }

    void cancel() {
      if (ctx != null) {
        ctx.cancel(null);
        ctx = null;
      }
      stream = null;
    }
  }

  /** Receives the next response, opening the next epoch or the other copy as needed. */
  private boolean fill() throws DataLostException {
    if (cur == null) {
      if (next >= locs.size()) {
        finish();
        return false;
      }
      cur = new Fetch(locs.get(next++));
      open();
      return true;
    }
    if (cur.stream == null) {
      return true; // the epoch turned out empty
    }
    try {
      Fetch f = cur;
      Boolean more = f.ctx.call(() -> f.stream.hasNext());
      if (!more) {
        f.cancel();
        cur = null;
        return true;
      }
      pending.addAll(f.stream.next().getBatchesList());
    } catch (StatusRuntimeException e) {
      failCopy(e, false);
    } catch (Exception e) {
      failCopy(e, false);
    }
    return true;
  }

  private void open() throws DataLostException {
    Fetch f = cur;
    String addr = f.replica ? f.loc.getReplica().getAddr() : f.loc.getPrimary().getAddr();
    FetchRequest req = FetchRequest.newBuilder().setShuffleId(shuffle).setPartition(partition).setEpoch(f.loc.getEpoch())
        .addAllWinners(winners).build();
    f.ctx = Context.current().withCancellation();
    try {
      f.stream = f.ctx.call(() -> app.workerBlocking(addr).fetch(req));
    } catch (Exception e) {
      failCopy(e, false);
    }
  }

  /**
   * Gives up on the copy being read and switches to the other one. A copy without the epoch
   * (NOT_FOUND) or with corrupt data (DATA_LOSS, or a CRC mismatch seen here) is not asked again;
   * other failures alternate between the copies with backoff until the retry deadline.
   */
  private void failCopy(Throwable cause, boolean corrupt) throws DataLostException {
    Fetch f = cur;
    f.cancel();
    pending.clear();
    if (f.deadline == 0) {
      f.deadline = System.nanoTime() + app.config().retryDeadline().toNanos();
    }
    Status.Code code = Status.fromThrowable(cause).getCode();
    if (corrupt || code == Status.Code.NOT_FOUND || code == Status.Code.DATA_LOSS) {
      f.bad.put(f.replica, cause);
    }
    List<Boolean> copies = new ArrayList<>(List.of(false));
    if (f.loc.hasReplica()) {
      copies.add(true);
    }
    List<Boolean> usable = new ArrayList<>();
    for (Boolean c : copies) {
      if (!f.bad.containsKey(c)) {
        usable.add(c);
      }
    }
    if (usable.isEmpty()) {
      boolean allMissing = true;
      for (Boolean c : copies) {
        allMissing &= Status.fromThrowable(f.bad.get(c)).getCode() == Status.Code.NOT_FOUND;
      }
      if (allMissing) {
        cur = null; // an epoch that got no batch has no file; the count check still applies
        return;
      }
      throw lost("no copy of epoch " + f.loc.getEpoch() + " is readable", cause);
    }
    if (System.nanoTime() - f.deadline > 0) {
      throw lost("epoch " + f.loc.getEpoch() + " kept failing", cause);
    }
    LOG.info("rss: fetch of shuffle " + shuffle + " partition " + partition + " epoch " + f.loc.getEpoch()
        + " failed (" + cause + "); trying another copy");
    f.tries++;
    f.replica = usable.get(f.tries % usable.size());
    if (f.tries >= 2) {
      MapWriter.backoff(f.tries - 2);
    }
    open();
  }

  /** Checks that exactly the winners' batches were read. */
  private void finish() throws DataLostException {
    for (MapWinner w : winners) {
      int m = w.getMapIndex();
      int n = got.getOrDefault(m, 0);
      if (n != expected.get(m)) {
        throw lost("map " + m + " attempt " + w.getAttempt() + ": read " + n + " of " + expected.get(m) + " batches", null);
      }
    }
  }

  private DataLostException lost(String msg, Throwable cause) {
    return new DataLostException(shuffle, partition, msg, cause);
  }

  @Override
  public void close() {
    if (cur != null) {
      cur.cancel();
    }
  }
}
