package io.basalt.rss.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.basalt.rss.client.Codec;
import io.basalt.rss.client.RssConfig;
import java.time.Duration;
import java.util.List;
import org.apache.spark.SparkConf;
import org.junit.jupiter.api.Test;

class BasaltConfTest {
  private static SparkConf conf(String... kv) {
    SparkConf c = new SparkConf(false);
    for (int i = 0; i < kv.length; i += 2) {
      c.set(kv[i], kv[i + 1]);
    }
    return c;
  }

  @Test
  void defaults() {
    BasaltConf s = new BasaltConf(conf(BasaltConf.MASTERS, "m1:9090, m2:9090"));
    RssConfig c = s.newApplication("app-1");
    assertEquals(List.of("m1:9090", "m2:9090"), c.masters());
    assertEquals(Codec.LZ4, c.codec());
    assertTrue(c.replicate());
    assertEquals(64L << 20, c.maxInFlightBytes());
    assertEquals(Duration.ofSeconds(60), c.retryDeadline());
    assertEquals(32, c.token().length(), "a drawn token");
    assertEquals(256 << 10, s.bufferSize);
  }

  @Test
  void settings() {
    String token = "0123456789abcdef0123456789abcdef";
    RssConfig c = new BasaltConf(conf(BasaltConf.MASTERS, "[::1]:9090", BasaltConf.APP_TOKEN, token,
        BasaltConf.CODEC, "zstd", BasaltConf.REPLICATE, "false", BasaltConf.RETRY_DEADLINE, "5s",
        BasaltConf.MAX_IN_FLIGHT, "1m")).newApplication("app-2");
    assertEquals(token, c.token());
    assertEquals(Codec.ZSTD, c.codec());
    assertEquals(false, c.replicate());
    assertEquals(Duration.ofSeconds(5), c.retryDeadline());
    assertEquals(1L << 20, c.maxInFlightBytes());
  }

  @Test
  void badSettingsAreClearErrors() {
    assertThrows(IllegalArgumentException.class, () -> new BasaltConf(conf()).newApplication("a"), "no masters");
    assertThrows(IllegalArgumentException.class, () -> new BasaltConf(conf(BasaltConf.MASTERS, "m1")).newApplication("a"), "no port");
    assertThrows(IllegalArgumentException.class,
        () -> new BasaltConf(conf(BasaltConf.MASTERS, "m1:1", BasaltConf.APP_TOKEN, "short")).newApplication("a"), "short token");
    assertThrows(IllegalArgumentException.class,
        () -> new BasaltConf(conf(BasaltConf.MASTERS, "m1:1", BasaltConf.CODEC, "snappy")).newApplication("a"), "codec");
    assertThrows(IllegalArgumentException.class, () -> new BasaltConf(conf(BasaltConf.BUFFER, "65m")), "buffer too large");
    assertThrows(IllegalArgumentException.class,
        () -> new BasaltConf(conf(BasaltConf.BUFFER, "1m", BasaltConf.MAX_BUFFERED, "512k")), "buffer bound below the buffer");
    assertThrows(IllegalArgumentException.class,
        () -> new BasaltShuffleManager(conf("spark.shuffle.useOldFetchProtocol", "true"), true), "old fetch protocol");
  }
}
