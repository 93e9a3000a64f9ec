package io.basalt.rss.spark;

import io.basalt.rss.client.RssConfig;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.shuffle.BaseShuffleHandle;

/**
 * The handle Spark ships to every task: the dependency, the shuffle's shape (the dependency's RDD
 * does not travel to executors) and how to reach the application.
 */
public final class BasaltShuffleHandle<K, V, C> extends BaseShuffleHandle<K, V, C> {
  private static final long serialVersionUID = 1L;

  private final RssConfig rss;
  private final int numMaps;
  private final int numPartitions;

  BasaltShuffleHandle(int shuffleId, ShuffleDependency<K, V, C> dependency, int numMaps, RssConfig rss) {
    super(shuffleId, dependency);
    this.rss = rss;
    this.numMaps = numMaps;
    this.numPartitions = dependency.partitioner().numPartitions();
  }

  RssConfig rss() {
    return rss;
  }

  int numMaps() {
    return numMaps;
  }

  int numPartitions() {
    return numPartitions;
  }
}
