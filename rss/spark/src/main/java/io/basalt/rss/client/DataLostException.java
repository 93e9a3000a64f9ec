package io.basalt.rss.client;

import java.io.IOException;

/**
 * A partition that cannot be read: data is missing or corrupt on every copy, or a batch count
 * does not match what the winning map attempt reported. The Spark reader turns it into a fetch
 * failure, so Spark reruns the map stage instead of returning a short result.
 */
public final class DataLostException extends IOException {
  private static final long serialVersionUID = 1L;

  private final int shuffle;
  private final int partition;

  public DataLostException(int shuffle, int partition, String message, Throwable cause) {
    super("reading shuffle " + shuffle + " partition " + partition + ": data lost: " + message, cause);
    this.shuffle = shuffle;
    this.partition = partition;
  }

  public int shuffle() {
    return shuffle;
  }

  public int partition() {
    return partition;
  }
}
