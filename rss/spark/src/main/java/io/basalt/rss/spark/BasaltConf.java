package io.basalt.rss.spark;

import io.basalt.rss.client.Codec;
import io.basalt.rss.client.RssApp;
import io.basalt.rss.client.RssConfig;
import java.time.Duration;
import org.apache.spark.SparkConf;

/** The plugin's settings, under spark.basalt.rss.* (docs/spark.md lists them with defaults). */
final class BasaltConf {
  static final String PREFIX = "spark.basalt.rss.";
  static final String MASTERS = PREFIX + "masters";
  static final String BUFFER = PREFIX + "push.bufferSize";
  static final String MAX_BUFFERED = PREFIX + "push.maxBuffered";
  static final String MAX_IN_FLIGHT = PREFIX + "push.maxInFlight";
  static final String CODEC = PREFIX + "compression.codec";
  static final String REPLICATE = PREFIX + "replicate";
  static final String RETRY_DEADLINE = PREFIX + "retryDeadline";
  static final String APP_TOKEN = PREFIX + "appToken";

  final long bufferSize;
  final long maxBuffered;
  private final SparkConf conf;

  BasaltConf(SparkConf conf) {
    this.conf = conf;
    bufferSize = conf.getSizeAsBytes(BUFFER, "256k");
    maxBuffered = conf.getSizeAsBytes(MAX_BUFFERED, "64m");
    if (bufferSize <= 0 || bufferSize > (64 << 20) || maxBuffered < bufferSize) {
      throw new IllegalArgumentException(BUFFER + " must be in (0, 64m] and " + MAX_BUFFERED + " at least as large");
    }
  }

  /** The client configuration of application appId, with its token: the driver's. */
  RssConfig newApplication(String appId) {
    String masters = conf.get(MASTERS, "");
    if (masters.isBlank()) {
      throw new IllegalArgumentException(MASTERS + " is not set: the RSS masters' host:port, comma-separated");
    }
    return new RssConfig(
        RssConfig.splitAddresses(masters),
        appId,
        token(conf.get(APP_TOKEN, "")),
        Codec.parse(conf.get(CODEC, "lz4")),
        conf.getBoolean(REPLICATE, true),
        conf.getSizeAsBytes(MAX_IN_FLIGHT, "64m"),
        Duration.ofMillis(conf.getTimeAsMs(RETRY_DEADLINE, "60s")));
  }

  /** Returns the configured token, checked, or a new random one when none is set. */
  static String token(String configured) {
    if (configured.isEmpty()) {
      return RssApp.newToken();
    }
    if (configured.length() < 32 || configured.length() > 128 || !configured.chars().allMatch(c -> c > ' ' && c < 127)) {
      throw new IllegalArgumentException(APP_TOKEN + " must be 32 to 128 printable ASCII characters without spaces");
    }
    return configured;
  }
}
