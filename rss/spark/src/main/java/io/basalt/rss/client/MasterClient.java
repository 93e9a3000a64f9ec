package io.basalt.rss.client;

import io.basalt.rss.proto.MasterGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * A connection to the masters of one cluster that sends every call to the one that leads, as Go's
 * rss/masterconn does: a master that does not lead answers UNAVAILABLE with the leader's address
 * in the basalt-rss-leader trailer (empty when unknown), and every error a master returns carries
 * basalt-rss-served; an UNAVAILABLE without it never reached a master. Both are retried on the
 * named leader or the next address, with backoff (50 ms doubling to 1 s) between rounds, until the
 * retry deadline. Every master command is idempotent (docs/rss.md, "Master replication"), so
 * retrying a call whose reply was lost is safe.
 */
final class MasterClient implements AutoCloseable {
  static final Metadata.Key<String> LEADER = Metadata.Key.of("basalt-rss-leader", Metadata.ASCII_STRING_MARSHALLER);
  static final Metadata.Key<String> SERVED = Metadata.Key.of("basalt-rss-served", Metadata.ASCII_STRING_MARSHALLER);

  private final List<String> addrs;
  private final List<ManagedChannel> channels = new ArrayList<>();
  private final List<MasterGrpc.MasterBlockingStub> stubs = new ArrayList<>();
  private final Duration window;
  private final AtomicInteger cur = new AtomicInteger();

  MasterClient(List<String> addrs, Channels channels, Duration window) {
    this.addrs = List.copyOf(addrs);
    this.window = window;
    for (String a : addrs) {
      ManagedChannel c = channels.open(a);
      this.channels.add(c);
      stubs.add(MasterGrpc.newBlockingStub(c));
    }
  }

  /** Runs fn on the leading master's stub, failing over as the class comment says. */
  <T> T call(Function<MasterGrpc.MasterBlockingStub, T> fn) {
    long deadline = System.nanoTime() + window.toNanos();
    long backoff = 50;
    for (int tried = 1; ; tried++) {
      int i = cur.get();
      try {
        return fn.apply(stubs.get(i).withDeadlineAfter(window.toMillis(), TimeUnit.MILLISECONDS));
      } catch (StatusRuntimeException e) {
        Metadata tr = Status.trailersFromThrowable(e);
        if (!failOver(e, tr)) {
          throw e;
        }
        cur.compareAndSet(i, next(i, tr));
        if (tried % stubs.size() != 0) {
          continue;
        }
        if (System.nanoTime() - deadline >= 0) {
          throw e;
        }
        sleep(backoff);
        backoff = Math.min(2 * backoff, 1000);
      }
    }
  }

  /** Reports whether a master answered the call that failed with e (rather than none being reached). */
  static boolean served(StatusRuntimeException e) {
    Metadata tr = Status.trailersFromThrowable(e);
    return tr != null && tr.containsKey(SERVED) && !tr.containsKey(LEADER);
  }

  private static boolean failOver(StatusRuntimeException e, Metadata tr) {
    if (e.getStatus().getCode() != Status.Code.UNAVAILABLE) {
      return false;
    }
    return tr == null || tr.containsKey(LEADER) || !tr.containsKey(SERVED);
  }

  private int next(int i, Metadata tr) {
    String leader = tr == null ? null : tr.get(LEADER);
    if (leader != null && !leader.isEmpty()) {
      int j = addrs.indexOf(leader);
      if (j >= 0 && j != i) {
        return j;
      }
    }
    return (i + 1) % stubs.size();
  }

  static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", e);
    }
  }

  @Override
  public void close() {
    channels.forEach(Channels::close);
  }
}
