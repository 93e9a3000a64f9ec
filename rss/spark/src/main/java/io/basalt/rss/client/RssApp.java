package io.basalt.rss.client;

import io.basalt.rss.proto.ApplicationHeartbeatRequest;
import io.basalt.rss.proto.CommitShuffleRequest;
import io.basalt.rss.proto.GetShuffleRequest;
import io.basalt.rss.proto.RegisterApplicationRequest;
import io.basalt.rss.proto.RegisterApplicationResponse;
import io.basalt.rss.proto.RegisterShuffleRequest;
import io.basalt.rss.proto.ShuffleLayout;
import io.basalt.rss.proto.ShuffleState;
import io.basalt.rss.proto.UnregisterApplicationRequest;
import io.basalt.rss.proto.UnregisterShuffleRequest;
import io.basalt.rss.proto.WorkerGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A registered application: the master connection, its credentials and one channel per worker.
 * Thread-safe. The registering process ({@link #register}) renews the lease until {@link #close};
 * others ({@link #connect}) join with the token.
 */
public final class RssApp implements AutoCloseable {
  private static final Logger LOG = Logger.getLogger(RssApp.class.getName());

  private final RssConfig cfg;
  private final Channels channels;
  private final MasterClient master;
  private final Map<String, ManagedChannel> workers = new ConcurrentHashMap<>();
  private final Map<Integer, CompletableFuture<ShuffleState>> commits = new ConcurrentHashMap<>();
  private ScheduledExecutorService heartbeat;

  private RssApp(RssConfig cfg) {
    this.cfg = cfg;
    this.channels = new Channels(cfg.appId(), cfg.token());
    this.master = new MasterClient(cfg.masters(), channels, cfg.retryDeadline());
  }

  /** Returns 16 random bytes as 32 hex digits: a new application's token. */
  public static String newToken() {
    byte[] b = new byte[16];
    new SecureRandom().nextBytes(b);
    return HexFormat.of().formatHex(b);
  }

  /**
   * Registers the application whose token cfg carries (drawn with {@link #newToken}, so a
   * registration retried on another master renews the same one) and keeps its lease alive.
   */
  public static RssApp register(RssConfig cfg) {
    RssApp a = new RssApp(cfg);
    try {
      RegisterApplicationResponse r =
          a.master.call(s -> s.registerApplication(RegisterApplicationRequest.newBuilder().setAppId(cfg.appId()).build()));
      if (!r.getToken().equals(cfg.token())) {
        throw new IllegalStateException("the master gave application " + cfg.appId() + " another token");
      }
      long every = Math.max(r.getLeaseMs() / 3, 100);
      a.heartbeat = Executors.newSingleThreadScheduledExecutor(run -> {
        Thread t = new Thread(run, "basalt-rss-heartbeat");
        t.setDaemon(true);
        return t;
      });
      a.heartbeat.scheduleWithFixedDelay(a::beat, every, every, TimeUnit.MILLISECONDS);
      return a;
    } catch (RuntimeException e) {
      a.close();
      throw e;
    }
  }

  /** Joins an application registered elsewhere (an executor with the driver's token). */
  public static RssApp connect(RssConfig cfg) {
    return new RssApp(cfg);
  }

  private void beat() {
    try {
      master.call(s -> s.applicationHeartbeat(ApplicationHeartbeatRequest.getDefaultInstance()));
    } catch (RuntimeException e) {
      LOG.log(Level.WARNING, "rss: application heartbeat failed for " + cfg.appId(), e);
    }
  }

  public RssConfig config() {
    return cfg;
  }

  MasterClient master() {
    return master;
  }

  /** Returns the stub of the worker at addr (one channel each, opened on first use). */
  WorkerGrpc.WorkerStub worker(String addr) {
    return WorkerGrpc.newStub(workers.computeIfAbsent(addr, channels::open));
  }

  WorkerGrpc.WorkerBlockingStub workerBlocking(String addr) {
    return WorkerGrpc.newBlockingStub(workers.computeIfAbsent(addr, channels::open));
  }

  /** Registers a shuffle (idempotent for the same shape) and returns its current layout. */
  public ShuffleLayout registerShuffle(int shuffle, int numMaps, int numPartitions) {
    return master.call(s -> s.registerShuffle(request(shuffle, numMaps, numPartitions, "")));
  }

  /**
   * Registers a shuffle for one run of its producer (a Spark map stage attempt), or finds it
   * registered by that run, and returns its current layout; returns null when another run (or
   * another shape) holds the id, so the caller moves on to another id.
   */
  public ShuffleLayout claimShuffle(int shuffle, int numMaps, int numPartitions, String run) {
    try {
      return master.call(s -> s.registerShuffle(request(shuffle, numMaps, numPartitions, run)));
    } catch (StatusRuntimeException e) {
      if (e.getStatus().getCode() == Status.Code.ALREADY_EXISTS) {
        return null;
      }
      throw e;
    }
  }

  private RegisterShuffleRequest request(int shuffle, int numMaps, int numPartitions, String run) {
    return RegisterShuffleRequest.newBuilder().setShuffleId(shuffle).setNumMaps(numMaps)
        .setNumPartitions(numPartitions).setNoReplica(!cfg.replicate()).setRun(run).build();
  }

  /** Returns the shuffle's state: locations of every epoch, the winners, whether committed. */
  public ShuffleState shuffle(int shuffle) {
    return master.call(s -> s.getShuffle(GetShuffleRequest.newBuilder().setShuffleId(shuffle).build()));
  }

  /** Returns the shuffle's state, or null when the application has no such shuffle. */
  public ShuffleState shuffleIfExists(int shuffle) {
    try {
      return shuffle(shuffle);
    } catch (StatusRuntimeException e) {
      if (e.getStatus().getCode() == Status.Code.NOT_FOUND) {
        return null;
      }
      throw e;
    }
  }

  /**
   * Returns the state of the shuffle once it is committed, committing it first if it is not. The
   * readers of one process share one commit call; the master runs a commit once whoever asks. A
   * commit the master keeps refusing until the retry deadline (a partition with no copy left to
   * commit) is a {@link DataLostException}; masters that cannot be reached are not.
   */
  public ShuffleState committed(int shuffle) throws DataLostException {
    ShuffleState st = shuffle(shuffle);
    if (st.getCommitted()) {
      return st;
    }
    CompletableFuture<ShuffleState> f = new CompletableFuture<>();
    CompletableFuture<ShuffleState> prev = commits.putIfAbsent(shuffle, f);
    if (prev != null) {
      try {
        return prev.join();
      } catch (java.util.concurrent.CompletionException e) {
        if (e.getCause() instanceof DataLostException d) {
          throw d;
        }
        throw e;
      }
    }
    try {
      commit(shuffle);
      st = shuffle(shuffle);
      f.complete(st);
      return st;
    } catch (DataLostException | RuntimeException e) {
      f.completeExceptionally(e);
      throw e;
    } finally {
      commits.remove(shuffle, f);
    }
  }

  /** Commits the shuffle, retrying a commit the master answered with a retryable refusal. */
  private void commit(int shuffle) throws DataLostException {
    long deadline = System.nanoTime() + cfg.retryDeadline().toNanos();
    for (int attempt = 0; ; attempt++) {
      try {
        master.call(s -> s.commitShuffle(CommitShuffleRequest.newBuilder().setShuffleId(shuffle).build()));
        return;
      } catch (StatusRuntimeException e) {
        Status.Code code = e.getStatus().getCode();
        boolean retry = code == Status.Code.UNAVAILABLE || code == Status.Code.ABORTED;
        if (!retry) {
          throw e;
        }
        if (System.nanoTime() - deadline > 0) {
          if (MasterClient.served(e)) {
            // A master answered: some partition has no copy it could commit.
            throw new DataLostException(shuffle, -1, "the shuffle cannot be committed", e);
          }
          throw e;
        }
        MapWriter.backoff(attempt);
      }
    }
  }

  /** Opens a writer for one map attempt of a shuffle whose current layout is given. */
  public MapWriter newWriter(int shuffle, ShuffleLayout layout, int numPartitions, int mapIndex, int attempt) {
    return new MapWriter(this, shuffle, layout, numPartitions, mapIndex, attempt);
  }

  /** Deletes the shuffle's data (unknown shuffles too). */
  public void unregisterShuffle(int shuffle) {
    master.call(s -> s.unregisterShuffle(UnregisterShuffleRequest.newBuilder().setShuffleId(shuffle).build()));
  }

  /** Ends the application: every file it has on the workers is deleted. */
  public void unregister() {
    try {
      master.call(s -> s.unregisterApplication(UnregisterApplicationRequest.getDefaultInstance()));
    } catch (StatusRuntimeException e) {
      // A retried call after a failover finds the application gone: done.
      if (e.getStatus().getCode() != Status.Code.NOT_FOUND) {
        throw e;
      }
    }
  }

  @Override
  public void close() {
    if (heartbeat != null) {
      heartbeat.shutdownNow();
    }
    master.close();
    workers.values().forEach(Channels::close);
    workers.clear();
  }
}
