package io.basalt.rss.spark;

import io.basalt.rss.client.DataLostException;
import io.basalt.rss.client.PartitionReader;
import io.basalt.rss.client.RssApp;
import io.basalt.rss.proto.ShuffleState;
import java.io.ByteArrayInputStream;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import org.apache.spark.Aggregator;
import org.apache.spark.InterruptibleIterator;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.SparkEnv;
import org.apache.spark.TaskContext;
import org.apache.spark.serializer.SerializerInstance;
import org.apache.spark.shuffle.FetchFailedException;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.shuffle.ShuffleReader;
import org.apache.spark.storage.BlockId;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.ShuffleBlockId;
import org.apache.spark.util.TaskCompletionListener;
import org.apache.spark.util.collection.ExternalSorter;
import scala.Option;
import scala.Product2;
import scala.Tuple2;
import scala.Tuple3;
import scala.collection.AbstractIterator;
import scala.collection.Iterator;
import scala.collection.Seq;

/**
 * Reads reduce partitions [startPartition, endPartition) of a shuffle, restricted to maps
 * [startMap, endMap) (AQE's coalesced and skew-split reads), from the RSS.
 *
 * <p>Which attempt of each map counts is Spark's to say: the reader asks Spark's map output
 * tracker, as Spark's own reader does, and reads exactly the attempt whose map status Spark
 * registered (its task attempt id), from the RSS shuffle of the generation the status names, so
 * a speculative copy, a retried task or a rerun stage is never read twice nor dropped. Each RSS
 * shuffle is committed by its first reader; every partition is read exactly (CRCs, the batch
 * count the attempt reported). Records are aggregated and sorted as Spark's own
 * BlockStoreShuffleReader does. Data no copy can serve raises FetchFailedException, so Spark
 * reruns the map stage.
 */
final class BasaltShuffleReader<K, C> implements ShuffleReader<K, C> {
  private final RssApp app;
  private final ShuffleDependency<K, Object, C> dep;
  private final int shuffleId;
  private final int startMap;
  private final int endMap;
  private final int startPartition;
  private final int endPartition;
  private final TaskContext context;
  private final ShuffleReadMetricsReporter metrics;

  BasaltShuffleReader(RssApp app, BasaltShuffleHandle<K, Object, C> handle, int startMap, int endMap, int startPartition,
      int endPartition, TaskContext context, ShuffleReadMetricsReporter metrics) {
    this.app = app;
    this.dep = handle.dependency();
    this.shuffleId = handle.shuffleId();
    this.startMap = startMap;
    this.endMap = endMap;
    this.startPartition = startPartition;
    this.endPartition = endPartition;
    this.context = context;
    this.metrics = metrics;
  }

  @Override
  @SuppressWarnings({"unchecked", "rawtypes"})
  public Iterator<Product2<K, C>> read() {
    Records records = new Records(plan());
    context.addTaskCompletionListener(new TaskCompletionListener() {
      @Override
      public void onTaskCompletion(TaskContext ctx) {
        records.close();
      }
    });
    Iterator<Product2<K, C>> out;
    Option<Aggregator<K, Object, C>> agg = dep.aggregator();
    if (agg.isDefined()) {
      out = dep.mapSideCombine()
          ? (Iterator) agg.get().combineCombinersByKey((Iterator) records, context)
          : (Iterator) agg.get().combineValuesByKey((Iterator) records, context);
    } else {
      out = (Iterator) records;
    }
    if (dep.keyOrdering().isDefined()) {
      ExternalSorter<K, C, C> sorter = SparkCompat.sorter(context, dep);
      out = sorter.insertAllAndUpdateMetrics(out);
    }
    return new InterruptibleIterator<>(context, out);
  }

  /** One read: a partition of one generation, the attempt of each map that counts. */
  private record Read(int partition, int gen, Map<Integer, Integer> attempts, long bytes) {}

  /** A read whose fetch has started. */
  private record Started(Read read, PartitionReader reader) {}

  /**
   * Asks Spark's map output tracker which attempt of each map in range counts and which
   * generation holds it, and returns the reads in partition order. A map with no data in a
   * partition is not listed by Spark and needs no read.
   */
  private ArrayDeque<Read> plan() {
    TreeMap<Integer, TreeMap<Integer, Map<Integer, Integer>>> byPartition = new TreeMap<>();
    Map<Long, Long> bytes = new HashMap<>(); // partition << 32 | generation -> bytes
    scala.collection.Iterator<Tuple2<BlockManagerId, Seq<Tuple3<BlockId, Object, Object>>>> it =
        SparkEnv.get().mapOutputTracker().getMapSizesByExecutorId(shuffleId, startMap, endMap, startPartition, endPartition);
    while (it.hasNext()) {
      Tuple2<BlockManagerId, Seq<Tuple3<BlockId, Object, Object>>> loc = it.next();
      int gen = RssShuffles.generation(shuffleId, loc._1());
      scala.collection.Iterator<Tuple3<BlockId, Object, Object>> blocks = loc._2().iterator();
      while (blocks.hasNext()) {
        Tuple3<BlockId, Object, Object> b = blocks.next();
        if (!(b._1() instanceof ShuffleBlockId id)) {
          throw new IllegalStateException("shuffle " + shuffleId + ": unexpected block " + b._1());
        }
        byPartition.computeIfAbsent(id.reduceId(), p -> new TreeMap<>())
            .computeIfAbsent(gen, g -> new HashMap<>())
            .put((Integer) b._3(), Math.toIntExact(id.mapId()));
        bytes.merge(((long) id.reduceId() << 32) | gen, (Long) b._2(), Long::sum);
      }
    }
    ArrayDeque<Read> reads = new ArrayDeque<>();
    byPartition.forEach((p, gens) -> gens.forEach((g, attempts) -> reads.add(new Read(p, g, attempts, bytes.get(((long) p << 32) | g)))));
    return reads;
  }

  /**
   * Reads started ahead of the one being consumed, at most this many and (beyond the first) this
   * many bytes, as Spark's map statuses size them: a reduce task of a coalesced read has many small
   * partitions, and one fetch round trip each in turn would leave the task waiting. A started fetch
   * buffers up to its gRPC flow-control window (1 MiB).
   */
  static final int READS_AHEAD = 64;

  static final long BYTES_AHEAD = 16 << 20;

  /** The deserialized records of every read, one after another. */
  private final class Records extends AbstractIterator<Product2<Object, Object>> {
    private final ArrayDeque<Read> reads;
    private final ArrayDeque<Started> ahead = new ArrayDeque<>();
    private long aheadBytes; // of the reads in ahead
    private final Map<Integer, ShuffleState> committed = new HashMap<>(); // by generation
    private final SerializerInstance ser = dep.serializer().newInstance();
    private Read read; // the read of reader
    private Read starting; // the read being started ahead, while it is
    private PartitionReader reader;
    private Iterator<Tuple2<Object, Object>> batch;
    private boolean done;
    private boolean merged;

    Records(ArrayDeque<Read> reads) {
      this.reads = reads;
    }

    @Override
    public boolean hasNext() {
      while (!done && (batch == null || !batch.hasNext())) {
        nextBatch();
      }
      return !done;
    }

    @Override
    public Product2<Object, Object> next() {
      if (!hasNext()) {
        throw new java.util.NoSuchElementException();
      }
      metrics.incRecordsRead(1);
      return batch.next();
    }

    /** Loads the next batch of the current or next read. */
    private void nextBatch() {
      long t0 = System.nanoTime();
      try {
        while (true) {
          if (reader == null) {
            startAhead();
            Started next = ahead.poll();
            if (next == null) {
              done = true;
              mergeMetrics();
              return;
            }
            read = next.read();
            reader = next.reader();
            aheadBytes -= read.bytes();
            startAhead();
          }
          long before = reader.storedBytesRead();
          ByteBuffer rec = reader.next();
          if (rec != null) {
            // Stored (compressed) bytes, as Spark's own reader counts them.
            metrics.incRemoteBytesRead(reader.storedBytesRead() - before);
            metrics.incRemoteBlocksFetched(1);
            batch = ser.deserializeStream(new ByteArrayInputStream(rec.array(), rec.arrayOffset() + rec.position(), rec.remaining()))
                .asKeyValueIterator();
            return;
          }
          reader.close();
          reader = null;
        }
      } catch (DataLostException e) {
        Read failed = starting != null ? starting : read;
        throw sneaky(new FetchFailedException(RssShuffles.location(failed.gen()), shuffleId, -1L, -1, failed.partition(), e.getMessage(), e));
      } finally {
        metrics.incFetchWaitTime((System.nanoTime() - t0) / 1_000_000);
      }
    }

    /** Opens reads until READS_AHEAD are started ahead of the current one. */
    private void startAhead() throws DataLostException {
      while (!reads.isEmpty() && ahead.size() < READS_AHEAD && (ahead.isEmpty() || aheadBytes + reads.peek().bytes() <= BYTES_AHEAD)) {
        starting = reads.poll(); // named in a fetch failure if starting it fails
        PartitionReader r = new PartitionReader(app, state(starting.gen()), starting.partition(), starting.attempts());
        ahead.add(new Started(starting, r));
        aheadBytes += starting.bytes();
        r.start();
        starting = null;
      }
    }

    /** Returns the committed state of generation gen, committing it on first use. */
    private ShuffleState state(int gen) throws DataLostException {
      ShuffleState st = committed.get(gen);
      if (st == null) {
        st = app.committed(RssShuffles.id(shuffleId, gen));
        committed.put(gen, st);
      }
      return st;
    }

    /** Adds what this read counted to the task's shuffle read metrics (once), as Spark's reader does at its end. */
    void mergeMetrics() {
      if (!merged) {
        merged = true;
        context.taskMetrics().mergeShuffleReadMetrics();
      }
    }

    void close() {
      if (reader != null) {
        reader.close();
        reader = null;
      }
      ahead.forEach(a -> a.reader().close());
      ahead.clear();
    }
  }

  /** Throws a checked exception (Spark's FetchFailedException) from an iterator. */
  @SuppressWarnings("unchecked")
  private static <E extends Throwable> RuntimeException sneaky(Throwable e) throws E {
    throw (E) e;
  }
}
