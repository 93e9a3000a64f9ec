package io.basalt.rss.client;

import java.io.Serializable;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * What a client needs to reach the shuffle service. Serializable: the Spark driver ships it to
 * executors inside the shuffle handle.
 *
 * @param masters the masters' gRPC addresses (host:port); calls go to the one that leads
 * @param appId the application's id
 * @param token the application's secret token (32 hex digits)
 * @param codec the compression of pushed batches
 * @param replicate whether a shuffle keeps a replica of every partition on a second worker
 * @param maxInFlightBytes bytes pushed but not yet acknowledged per map writer
 * @param retryDeadline how long a push, a fetch or a master call keeps retrying
 */
public record RssConfig(
    List<String> masters,
    String appId,
    String token,
    Codec codec,
    boolean replicate,
    long maxInFlightBytes,
    Duration retryDeadline)
    implements Serializable {

  public RssConfig {
    masters = List.copyOf(masters);
    if (masters.isEmpty()) {
      throw new IllegalArgumentException("no RSS master address");
    }
    for (String m : masters) {
      hostPort(m);
    }
    if (appId == null || appId.isEmpty()) {
      throw new IllegalArgumentException("no application id");
    }
    if (maxInFlightBytes <= 0 || retryDeadline.isNegative() || retryDeadline.isZero()) {
      throw new IllegalArgumentException("maxInFlightBytes and retryDeadline must be positive");
    }
  }

  /** Splits a comma-separated address list, trimmed, empty entries dropped. */
  public static List<String> splitAddresses(String list) {
    List<String> out = new ArrayList<>();
    for (String a : list.split(",")) {
      if (!a.isBlank()) {
        out.add(a.trim());
      }
    }
    return out;
  }

  /** Splits host:port ([v6]:port too); IllegalArgumentException when malformed. */
  static Object[] hostPort(String addr) {
    int i = addr.lastIndexOf(':');
    if (i <= 0 || i == addr.length() - 1) {
      throw new IllegalArgumentException("RSS address \"" + addr + "\" is not host:port");
    }
    String host = addr.substring(0, i);
    if (host.startsWith("[") && host.endsWith("]")) {
      host = host.substring(1, host.length() - 1);
    }
    int port;
    try {
      port = Integer.parseInt(addr.substring(i + 1));
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("RSS address \"" + addr + "\" has a bad port", e);
    }
    if (port <= 0 || port > 65535) {
      throw new IllegalArgumentException("RSS address \"" + addr + "\" has a bad port");
    }
    return new Object[] {host, port};
  }
}
