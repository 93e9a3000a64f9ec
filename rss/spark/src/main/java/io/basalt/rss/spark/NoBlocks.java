package io.basalt.rss.spark;

import org.apache.spark.network.buffer.ManagedBuffer;
import org.apache.spark.network.shuffle.MergedBlockMeta;
import org.apache.spark.shuffle.ShuffleBlockResolver;
import org.apache.spark.storage.BlockId;
import org.apache.spark.storage.ShuffleMergedBlockId;
import scala.Option;

/**
 * The block resolver of the Basalt shuffle manager: shuffle blocks are on the RSS, never in a block
 * manager, and push-based shuffle is not used. SparkCompat adds the one method whose Scala type
 * differs between Spark lines.
 */
abstract class NoBlocks implements ShuffleBlockResolver {
  static final String MERGED = "push-based shuffle is not used with the Basalt RSS";

  @Override
  public ManagedBuffer getBlockData(BlockId blockId, Option<String[]> dirs) {
    throw new UnsupportedOperationException("shuffle block " + blockId + " is on the Basalt RSS, not in a block manager");
  }

  @Override
  public MergedBlockMeta getMergedBlockMeta(ShuffleMergedBlockId blockId, Option<String[]> dirs) {
    throw new UnsupportedOperationException(MERGED);
  }

  @Override
  public void stop() {}
}
