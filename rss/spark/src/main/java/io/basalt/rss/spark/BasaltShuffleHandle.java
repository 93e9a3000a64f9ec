package io.basalt.rss.spark;

import io.basalt.rss.client.RssConfig;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.shuffle.BaseShuffleHandle;

/** The handle Spark ships to every task: the dependency and how to reach the application. */
public final class BasaltShuffleHandle<K, V, C> extends BaseShuffleHandle<K, V, C> {
  private static final long serialVersionUID = 1L;

  private final RssConfig rss;

  BasaltShuffleHandle(int shuffleId, ShuffleDependency<K, V, C> dependency, RssConfig rss) {
    super(shuffleId, dependency);
    this.rss = rss;
  }

  RssConfig rss() {
    return rss;
  }
}
