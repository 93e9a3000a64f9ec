package io.basalt.rss.spark;

import io.basalt.rss.client.MapWriter;
import io.basalt.rss.client.RssApp;
import io.basalt.rss.proto.ShuffleLayout;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.util.Map;
import org.apache.spark.Partitioner;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.TaskContext;
import org.apache.spark.scheduler.MapStatus;
import org.apache.spark.serializer.SerializationStream;
import org.apache.spark.serializer.Serializer;
import org.apache.spark.serializer.SerializerInstance;
import org.apache.spark.shuffle.ShuffleWriteMetricsReporter;
import org.apache.spark.shuffle.ShuffleWriter;
import org.apache.spark.storage.BlockManagerId;
import scala.Option;
import scala.Product2;
import scala.collection.Iterator;
import scala.reflect.ClassTag;
import scala.reflect.ClassTag$;

/**
 * Writes one map task's output to the RSS: records are combined map-side when the dependency
 * asks, partitioned with its partitioner, serialized with its serializer into a buffer per
 * partition, and a partition's buffer is pushed as one batch (one complete serialization stream)
 * when it fills or the task's buffers together pass their bound. The task's stage attempt claims
 * the RSS shuffle it writes ({@link RssShuffles}).
 */
final class BasaltShuffleWriter<K, V, C> extends ShuffleWriter<K, V> {
  private static final ClassTag<Object> ANY = ClassTag$.MODULE$.Any();

  private final ShuffleDependency<K, V, C> dep;
  private final long mapId;
  private final TaskContext context;
  private final ShuffleWriteMetricsReporter metrics;
  private final BasaltConf settings;
  private final MapWriter writer;
  private final BlockManagerId location;
  private final Buffer[] buffers;
  private long buffered;
  private long writeTime; // nanoseconds in push and close: compressing, sending, waiting for acks
  private long[] lengths;
  private MapStatus status;
  private boolean stopping;

  /** An output stream that writes wherever target points (the current record's partition). */
  private static final class Redirect extends OutputStream {
    OutputStream target;

    @Override
    public void write(int b) throws IOException {
      target.write(b);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      target.write(b, off, len);
    }
  }

  /** A partition's serialized records not yet pushed. */
  private static final class Buffer extends ByteArrayOutputStream {
    SerializationStream stream; // open on this buffer (serializers that cannot relocate)
    long records;

    byte[] array() {
      return buf;
    }
  }

  BasaltShuffleWriter(RssApp app, BasaltShuffleHandle<K, V, C> handle, long mapId, TaskContext context,
      ShuffleWriteMetricsReporter metrics, BasaltConf settings, Map<String, Integer> generations) {
    this.dep = handle.dependency();
    this.mapId = mapId;
    this.context = context;
    this.metrics = metrics;
    this.settings = settings;
    String run = RssShuffles.run(context.stageId(), context.stageAttemptNumber());
    String key = handle.shuffleId() + "/" + run;
    int gen = generations.getOrDefault(key, 0);
    ShuffleLayout layout;
    while ((layout = app.claimShuffle(RssShuffles.id(handle.shuffleId(), gen), handle.numMaps(), handle.numPartitions(), run)) == null) {
      gen++; // an earlier run of the map stage holds it
    }
    generations.put(key, gen);
    this.location = RssShuffles.location(gen);
    // The attempt is Spark's task attempt id (the map id): unique in the application, so
    // speculative copies, task retries and tasks of retried stages are all different attempts,
    // and readers find the one Spark's map output tracker registered.
    this.writer = app.newWriter(RssShuffles.id(handle.shuffleId(), gen), layout, handle.numPartitions(),
        context.partitionId(), Math.toIntExact(mapId));
    this.buffers = new Buffer[handle.numPartitions()];
  }

  @Override
  public void write(Iterator<Product2<K, V>> records) throws IOException {
    Iterator<? extends Product2<K, ?>> it = combined(records);
    Partitioner partitioner = dep.partitioner();
    Serializer serializer = dep.serializer();
    SerializerInstance ser = serializer.newInstance();
    // With a serializer whose records can be moved and concatenated (Kryo, Spark SQL's rows), one
    // serializer stream writes every record, flushed after each straight into its partition's
    // buffer. Others (Java serialization) get one stream per partition.
    Redirect redirect = new Redirect();
    SerializationStream shared = serializer.supportsRelocationOfSerializedObjects() ? ser.serializeStream(redirect) : null;
    while (it.hasNext()) {
      Product2<K, ?> r = it.next();
      int p = partitioner.getPartition(r._1());
      Buffer b = buffers[p] == null ? (buffers[p] = new Buffer()) : buffers[p];
      int before = b.size();
      if (shared != null) {
        redirect.target = b;
        append(shared, r);
        shared.flush();
      } else {
        if (b.stream == null) {
          b.stream = ser.serializeStream(b);
        }
        append(b.stream, r);
      }
      b.records++;
      buffered += b.size() - before;
      if (b.size() >= settings.bufferSize) {
        push(p);
      } else if (buffered >= settings.maxBuffered) {
        push(largest());
      }
    }
    finish();
  }

  /** Returns the records, combined by key first when the dependency asks for a map-side combine. */
  @SuppressWarnings({"unchecked", "rawtypes"})
  private Iterator<? extends Product2<K, ?>> combined(Iterator<Product2<K, V>> records) {
    if (!dep.mapSideCombine()) {
      return records;
    }
    if (dep.aggregator().isEmpty()) {
      throw new IllegalStateException("map-side combine without an aggregator");
    }
    return (Iterator) dep.aggregator().get().combineValuesByKey(records, context);
  }

  private static void append(SerializationStream s, Product2<?, ?> r) {
    s.writeKey(r._1(), ANY);
    s.writeValue(r._2(), ANY);
  }

  /** Pushes every partition's rest, waits for the acknowledgements, reports the end. */
  private void finish() throws IOException {
    for (int p = 0; p < buffers.length; p++) {
      push(p);
    }
    long start = System.nanoTime();
    writer.close();
    writeTime += System.nanoTime() - start;
    metrics.incWriteTime(writeTime);
    lengths = writer.storedBytes();
    status = SparkCompat.mapStatus(location, lengths, mapId);
  }

  private int largest() {
    int best = 0;
    for (int p = 1; p < buffers.length; p++) {
      if (buffers[p] != null && (buffers[best] == null || buffers[p].size() > buffers[best].size())) {
        best = p;
      }
    }
    return best;
  }

  /** Pushes partition p's buffered records as one batch. */
  private void push(int p) throws IOException {
    Buffer b = buffers[p];
    if (b == null || b.records == 0) {
      return;
    }
    if (b.stream != null) {
      b.stream.close(); // flushes into b and ends the stream: the batch stands alone
      b.stream = null;
    }
    buffered -= Math.min(buffered, b.size());
    long start = System.nanoTime();
    int stored = writer.push(p, b.array(), 0, b.size());
    writeTime += System.nanoTime() - start;
    metrics.incBytesWritten(stored);
    metrics.incRecordsWritten(b.records);
    b.reset();
    b.records = 0;
  }

  @Override
  public Option<MapStatus> stop(boolean success) {
    if (stopping) {
      return Option.apply(null);
    }
    stopping = true;
    if (success && status != null) {
      return Option.apply(status);
    }
    writer.abort();
    return Option.apply(null);
  }

  @Override
  public long[] getPartitionLengths() {
    return lengths;
  }
}
