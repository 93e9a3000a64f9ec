package io.basalt.rss.spark;

import org.apache.spark.ShuffleDependency;
import org.apache.spark.TaskContext;
import org.apache.spark.network.buffer.ManagedBuffer;
import org.apache.spark.scheduler.MapStatus;
import org.apache.spark.scheduler.MapStatus$;
import org.apache.spark.shuffle.ShuffleBlockResolver;
import org.apache.spark.shuffle.checksum.RowBasedChecksum;
import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.ShuffleMergedBlockId;
import org.apache.spark.util.collection.ExternalSorter;
import scala.Option;
import scala.collection.immutable.Seq;

/**
 * The parts of Spark's API that differ between Spark 3.5 (Scala 2.12) and Spark 4 (Scala 2.13).
 * This is the Spark 4 copy; the build picks src/spark3 or src/spark4 (Maven profile spark4).
 */
final class SparkCompat {
  private SparkCompat() {}

  /** Returns the map status of a map task: where its output is, its bytes per partition. */
  static MapStatus mapStatus(BlockManagerId loc, long[] sizes, long mapId) {
    return MapStatus$.MODULE$.apply(loc, sizes, mapId, 0L);
  }

  /** Returns a sorter of a reduce task's records by the dependency's key ordering. */
  static <K, C> ExternalSorter<K, C, C> sorter(TaskContext context, ShuffleDependency<K, ?, C> dep) {
    return new ExternalSorter<>(context, Option.apply(null), Option.apply(null), dep.keyOrdering(), dep.serializer(), new RowBasedChecksum[0]);
  }

  /** Returns the block resolver: shuffle blocks are on the RSS, never in a block manager. */
  static ShuffleBlockResolver blockResolver() {
    return new NoBlocks() {
      @Override
      public Seq<ManagedBuffer> getMergedBlockData(ShuffleMergedBlockId blockId, Option<String[]> dirs) {
        throw new UnsupportedOperationException(MERGED);
      }
    };
  }
}
