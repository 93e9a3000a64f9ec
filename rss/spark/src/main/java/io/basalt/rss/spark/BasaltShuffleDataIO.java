package io.basalt.rss.spark;

import java.util.Map;
import org.apache.spark.SparkConf;
import org.apache.spark.shuffle.api.ShuffleDataIO;
import org.apache.spark.shuffle.api.ShuffleDriverComponents;
import org.apache.spark.shuffle.api.ShuffleExecutorComponents;
import org.apache.spark.shuffle.api.ShuffleMapOutputWriter;

/**
 * Tells Spark (spark.shuffle.sort.io.plugin.class) that shuffle data lives outside the executors:
 * its driver components report {@code supportsReliableStorage() == true}, so losing an executor
 * neither unregisters map outputs nor resubmits finished map tasks, and dynamic allocation works
 * without an external shuffle service. The executor side is unused: {@link
 * BasaltShuffleManager} writes through the RSS, not through map output writers.
 */
public final class BasaltShuffleDataIO implements ShuffleDataIO {
  public BasaltShuffleDataIO(SparkConf conf) {}

  @Override
  public ShuffleDriverComponents driver() {
    return new ShuffleDriverComponents() {
      @Override
      public Map<String, String> initializeApplication() {
        return Map.of();
      }

      @Override
      public void cleanupApplication() {}

      @Override
      public boolean supportsReliableStorage() {
        return true;
      }
    };
  }

  @Override
  public ShuffleExecutorComponents executor() {
    return new ShuffleExecutorComponents() {
      @Override
      public void initializeExecutor(String appId, String execId, Map<String, String> extraConfigs) {}

      @Override
      public ShuffleMapOutputWriter createMapOutputWriter(int shuffleId, long mapTaskId, int numPartitions) {
        throw new UnsupportedOperationException(
            "BasaltShuffleDataIO has no map output writers: set spark.shuffle.manager=" + BasaltShuffleManager.class.getName());
      }
    };
  }
}
