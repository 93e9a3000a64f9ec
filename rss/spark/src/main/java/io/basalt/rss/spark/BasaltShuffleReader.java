package io.basalt.rss.spark;

import io.basalt.rss.client.DataLostException;
import io.basalt.rss.client.PartitionReader;
import io.basalt.rss.client.RssApp;
import io.basalt.rss.proto.ShuffleState;
import java.io.ByteArrayInputStream;
import org.apache.spark.Aggregator;
import org.apache.spark.InterruptibleIterator;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.TaskContext;
import org.apache.spark.serializer.SerializerInstance;
import org.apache.spark.shuffle.FetchFailedException;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.shuffle.ShuffleReader;
import org.apache.spark.util.TaskCompletionListener;
import org.apache.spark.util.collection.ExternalSorter;
import scala.Option;
import scala.Product2;
import scala.collection.AbstractIterator;
import scala.collection.Iterator;

/**
 * Reads reduce partitions [startPartition, endPartition) of a shuffle, restricted to maps
 * [startMap, endMap) (AQE's coalesced and skew-split reads), from the RSS: the shuffle is
 * committed by its first reader, every partition is read exactly (winning attempts only, CRCs,
 * batch counts), and the records are aggregated and sorted as Spark's own
 * BlockStoreShuffleReader does. A partition no copy can serve raises FetchFailedException.
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
    long t0 = System.nanoTime();
    ShuffleState st = app.committed(shuffleId);
    metrics.incFetchWaitTime((System.nanoTime() - t0) / 1_000_000);
    Records records = new Records(st);
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
      ExternalSorter<K, C, C> sorter =
          new ExternalSorter<>(context, Option.apply(null), Option.apply(null), dep.keyOrdering(), dep.serializer());
      out = sorter.insertAllAndUpdateMetrics(out);
    }
    return new InterruptibleIterator<>(context, out);
  }

  /** The deserialized records of every partition in range, one partition after another. */
  private final class Records extends AbstractIterator<Product2<Object, Object>> {
    private final ShuffleState st;
    private final SerializerInstance ser = dep.serializer().newInstance();
    private int partition = startPartition;
    private PartitionReader reader;
    private Iterator<scala.Tuple2<Object, Object>> batch;
    private boolean done;

    Records(ShuffleState st) {
      this.st = st;
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

    /** Loads the next record (a serialized batch) of the current or next partition. */
    private void nextBatch() {
      long t0 = System.nanoTime();
      try {
        while (true) {
          if (reader == null) {
            if (partition >= endPartition) {
              done = true;
              return;
            }
            reader = new PartitionReader(app, st, partition, startMap, endMap);
          }
          byte[] rec = reader.next();
          if (rec != null) {
            metrics.incRemoteBytesRead(rec.length);
            metrics.incRemoteBlocksFetched(1);
            batch = ser.deserializeStream(new ByteArrayInputStream(rec)).asKeyValueIterator();
            return;
          }
          reader.close();
          reader = null;
          partition++;
        }
      } catch (DataLostException e) {
        throw sneaky(new FetchFailedException(BasaltShuffleWriter.LOCATION, shuffleId, -1L, -1, e.partition(), e.getMessage(), e));
      } finally {
        metrics.incFetchWaitTime((System.nanoTime() - t0) / 1_000_000);
      }
    }

    void close() {
      if (reader != null) {
        reader.close();
        reader = null;
      }
    }
  }

  /** Throws a checked exception (Spark's FetchFailedException) from an iterator. */
  @SuppressWarnings("unchecked")
  private static <E extends Throwable> RuntimeException sneaky(Throwable e) throws E {
    throw (E) e;
  }
}
