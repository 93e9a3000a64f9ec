package io.basalt.rss.spark;

import io.basalt.rss.client.RssApp;
import io.basalt.rss.client.RssConfig;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.spark.ShuffleDependency;
import org.apache.spark.SparkConf;
import org.apache.spark.TaskContext;
import org.apache.spark.shuffle.ShuffleBlockResolver;
import org.apache.spark.shuffle.ShuffleHandle;
import org.apache.spark.shuffle.ShuffleManager;
import org.apache.spark.shuffle.ShuffleReadMetricsReporter;
import org.apache.spark.shuffle.ShuffleReader;
import org.apache.spark.shuffle.ShuffleWriteMetricsReporter;
import org.apache.spark.shuffle.ShuffleWriter;

/**
 * A Spark ShuffleManager (spark.shuffle.manager) that keeps shuffle data on the Basalt RSS
 * workers, so an executor's loss costs no map output. See docs/spark.md.
 *
 * <p>On the driver it registers the application with the RSS master on the first shuffle (with
 * the configured token or one it draws), deletes every generation of a shuffle Spark cleans up,
 * and unregisters the application on stop. Map tasks register the RSS shuffle of their stage's
 * run ({@link RssShuffles}); executors join the application with the token the handle carries.
 * Thread-safe: Spark calls it from every task thread.
 */
public final class BasaltShuffleManager implements ShuffleManager {
  private static final Logger LOG = Logger.getLogger(BasaltShuffleManager.class.getName());

  private final SparkConf conf;
  private final BasaltConf settings;
  private final boolean isDriver;
  private final Map<String, RssApp> apps = new ConcurrentHashMap<>();
  // "shuffle/run" -> the generation that run claimed, so later tasks of the run claim it at once.
  private final Map<String, Integer> generations = new ConcurrentHashMap<>();
  private volatile RssConfig driverApp;

  public BasaltShuffleManager(SparkConf conf, boolean isDriver) {
    if (conf.getBoolean("spark.shuffle.useOldFetchProtocol", false)) {
      // The old protocol names map outputs by map index, not by task attempt: the reader could
      // not tell a speculative or retried attempt's output from the one Spark registered.
      throw new IllegalArgumentException(BasaltShuffleManager.class.getName() + " needs spark.shuffle.useOldFetchProtocol=false");
    }
    this.conf = conf;
    this.settings = new BasaltConf(conf);
    this.isDriver = isDriver;
  }

  public BasaltShuffleManager(SparkConf conf) {
    this(conf, false);
  }

  /** The driver's application, registered on first use. */
  private synchronized RssConfig driverApplication() {
    if (driverApp == null) {
      String appId = conf.getAppId();
      RssConfig cfg = settings.newApplication(appId);
      apps.put(appId, RssApp.register(cfg));
      LOG.info("rss: registered application " + appId + " with masters " + cfg.masters());
      driverApp = cfg;
    }
    return driverApp;
  }

  /** The client of the handle's application (one per process). */
  RssApp app(RssConfig cfg) {
    return apps.computeIfAbsent(cfg.appId(), id -> RssApp.connect(cfg));
  }

  /**
   * Registers the application with the RSS on the first shuffle and returns the handle. The RSS
   * shuffles themselves are registered by the map tasks, one per run of the map stage ({@link
   * RssShuffles}).
   */
  @Override
  public <K, V, C> ShuffleHandle registerShuffle(int shuffleId, ShuffleDependency<K, V, C> dependency) {
    RssConfig cfg = driverApplication();
    RssShuffles.id(shuffleId, RssShuffles.GENERATIONS - 1); // fails now if the id has no room
    return new BasaltShuffleHandle<>(shuffleId, dependency, dependency.rdd().getNumPartitions(), cfg);
  }

  @Override
  @SuppressWarnings("unchecked")
  public <K, V> ShuffleWriter<K, V> getWriter(ShuffleHandle handle, long mapId, TaskContext context, ShuffleWriteMetricsReporter metrics) {
    BasaltShuffleHandle<K, V, Object> h = (BasaltShuffleHandle<K, V, Object>) handle;
    return new BasaltShuffleWriter<>(app(h.rss()), h, mapId, context, metrics, settings, generations);
  }

  @Override
  @SuppressWarnings("unchecked")
  public <K, C> ShuffleReader<K, C> getReader(ShuffleHandle handle, int startMapIndex, int endMapIndex, int startPartition,
      int endPartition, TaskContext context, ShuffleReadMetricsReporter metrics) {
    BasaltShuffleHandle<K, Object, C> h = (BasaltShuffleHandle<K, Object, C>) handle;
    return new BasaltShuffleReader<>(app(h.rss()), h, startMapIndex, endMapIndex, startPartition, endPartition, context, metrics);
  }

  /** On the driver, deletes every generation of the shuffle from the RSS. */
  @Override
  public boolean unregisterShuffle(int shuffleId) {
    RssConfig cfg = driverApp;
    if (!isDriver || cfg == null) {
      return true;
    }
    generations.keySet().removeIf(k -> k.startsWith(shuffleId + "/"));
    try {
      RssApp a = app(cfg);
      // Runs claim generations from 0 up, so the first missing one ends the list.
      for (int gen = 0; gen < RssShuffles.GENERATIONS && a.shuffleIfExists(RssShuffles.id(shuffleId, gen)) != null; gen++) {
        a.unregisterShuffle(RssShuffles.id(shuffleId, gen));
      }
    } catch (RuntimeException e) {
      LOG.log(Level.WARNING, "rss: unregistering shuffle " + shuffleId + " failed; the application's end deletes it", e);
    }
    return true;
  }

  @Override
  public ShuffleBlockResolver shuffleBlockResolver() {
    return SparkCompat.blockResolver();
  }

  @Override
  public void stop() {
    RssConfig cfg = driverApp;
    if (isDriver && cfg != null) {
      try {
        app(cfg).unregister();
        LOG.info("rss: unregistered application " + cfg.appId());
      } catch (RuntimeException e) {
        LOG.log(Level.WARNING, "rss: unregistering application " + cfg.appId() + " failed; its lease expiry deletes its data", e);
      }
    }
    apps.values().forEach(RssApp::close);
    apps.clear();
  }
}
