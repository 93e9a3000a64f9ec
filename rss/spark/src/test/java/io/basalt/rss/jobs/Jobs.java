package io.basalt.rss.jobs;

import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.concat;
import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.hash;
import static org.apache.spark.sql.functions.lit;
import static org.apache.spark.sql.functions.sum;
import static org.apache.spark.sql.functions.when;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.function.LongFunction;
import org.apache.spark.HashPartitioner;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import scala.Tuple2;

/**
 * Spark jobs the end-to-end tests (internal/e2e/spark_test.go) submit with spark-submit, once with
 * the Basalt RSS and once with Spark's own shuffle. Each writes OUT/result.json: per job its
 * result checksum (equal checksums mean equal results), whether the job checked its own result
 * exact, its wall time, and what the scheduler did (Stats).
 *
 * <pre>
 * Jobs suite OUT [JOB...]              groupBy/aggregate, sort, AQE skew join, 2,500 partitions, a spilling sort
 * Jobs pause OUT DIR MAPS PARTS RECORDS [map]
 *                                       reduce tasks (or with "map", the first attempt of the
 *                                       second-to-last map task, half-way) pause until DIR/go exists
 * Jobs speculate OUT MAPS RECORDS       map 0's first attempt finishes late; speculation runs a copy
 * Jobs bench OUT MIB MAPS PARTS         shuffles MIB MiB of 100-byte records
 * Jobs dynamic OUT                      a shuffle read again after its writers' executors were released
 * </pre>
 */
public final class Jobs {
  private Jobs() {}

  public static void main(String[] args) throws Exception {
    if (args.length < 2) {
      throw new IllegalArgumentException("usage: Jobs suite|pause|speculate|bench OUT [args]");
    }
    SparkSession spark = SparkSession.builder().appName("basalt-" + args[0]).getOrCreate();
    JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
    Stats stats = new Stats();
    jsc.sc().addSparkListener(stats);
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("shuffle_manager", jsc.getConf().get("spark.shuffle.manager", "sort"));
    long t0 = System.nanoTime();
    switch (args[0]) {
      case "suite" -> suite(spark, jsc, stats, out, List.of(args).subList(2, args.length));
      case "pause" -> out.put("pause", pause(jsc, args[2], i(args[3]), i(args[4]), i(args[5]), args.length > 6 && args[6].equals("map")));
      case "speculate" -> out.put("speculate", speculate(jsc, stats, i(args[2]), i(args[3])));
      case "bench" -> out.put("bench", bench(jsc, i(args[2]), i(args[3]), i(args[4])));
      case "dynamic" -> out.put("dynamic", dynamic(jsc, stats));
      default -> throw new IllegalArgumentException("unknown job " + args[0]);
    }
    out.put("millis", (System.nanoTime() - t0) / 1_000_000);
    settle(jsc);
    out.put("stats", stats.toMap());
    new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(new File(args[1], "result.json"), out);
    spark.stop();
  }

  private static int i(String s) {
    return Integer.parseInt(s);
  }

  /** Waits until the listener has seen every event so far. */
  private static void settle(JavaSparkContext jsc) {
    try {
      jsc.sc().listenerBus().waitUntilEmpty(60_000);
    } catch (java.util.concurrent.TimeoutException e) {
      throw new IllegalStateException("the listener bus did not drain", e);
    }
  }

  /** Runs the correctness suite (or the named jobs of it): each checksum is compared across shuffle managers. */
  private static void suite(SparkSession spark, JavaSparkContext jsc, Stats stats, Map<String, Object> out, List<String> only) {
    java.util.function.Predicate<String> run = name -> only.isEmpty() || only.contains(name);
    if (run.test("groupby")) {
      out.put("groupby", timed(() -> groupBy(spark, jsc, 1_000_000, 8, 16)));
    }
    if (run.test("sort")) {
      out.put("sort", timed(() -> sort(jsc, 1_000_000, 8, 12)));
    }
    if (run.test("join")) {
      out.put("join", timed(() -> skewJoin(spark, 1_000_000, 10_000, 8)));
    }
    if (run.test("wide")) {
      out.put("wide", timed(() -> wide(spark, 1_000_000, 8, 2_500)));
    }
    if (run.test("spill")) {
      settle(jsc);
      long before = (long) stats.toMap().get("memory_spilled");
      Map<String, Object> spill = timed(() -> spillingSort(jsc, 2_000_000, 8, 4));
      settle(jsc);
      spill.put("memory_spilled", (long) stats.toMap().get("memory_spilled") - before);
      out.put("spill", spill);
    }
  }

  private static Map<String, Object> timed(java.util.function.Supplier<Map<String, Object>> job) {
    long t0 = System.nanoTime();
    Map<String, Object> m = job.get();
    m.put("millis", (System.nanoTime() - t0) / 1_000_000);
    return m;
  }

  /** SplitMix64's finalizer: a deterministic, well-mixed function of x. */
  static long mix(long x) {
    x = (x ^ (x >>> 30)) * 0xbf58476d1ce4e5b9L;
    x = (x ^ (x >>> 27)) * 0x94d049bb133111ebL;
    return x ^ (x >>> 31);
  }

  /** Returns n values f(0) .. f(n-1), made as they are consumed. */
  static <T> Iterator<T> generate(long n, LongFunction<T> f) {
    return new Iterator<>() {
      private long next;

      @Override
      public boolean hasNext() {
        return next < n;
      }

      @Override
      public T next() {
        if (next >= n) {
          throw new NoSuchElementException();
        }
        return f.apply(next++);
      }
    };
  }

  /** A record generator that travels to the executors. */
  interface Gen<T> extends LongFunction<T>, java.io.Serializable {}

  /** Map index m of maps makes records [m*per, (m+1)*per) of f. */
  static <K, V> JavaPairRDD<K, V> records(JavaSparkContext jsc, int maps, long per, Gen<Tuple2<K, V>> f) {
    List<Integer> idx = new ArrayList<>();
    for (int m = 0; m < maps; m++) {
      idx.add(m);
    }
    return jsc.parallelize(idx, maps).flatMapToPair(m -> generate(per, j -> f.apply(m * per + j)));
  }

  /** reduceByKey (map-side combine), groupByKey (none) and a DataFrame groupBy().agg(). */
  static Map<String, Object> groupBy(SparkSession spark, JavaSparkContext jsc, long n, int maps, int parts) {
    JavaPairRDD<Long, Long> pairs = records(jsc, maps, n / maps, i -> new Tuple2<>(i % 50_000, i));
    long reduced = pairs.reduceByKey(Long::sum, parts).map(t -> mix(t._1() * 31 + t._2())).reduce(Long::sum);
    long grouped = pairs.groupByKey(parts).map(t -> {
      long c = 0;
      long s = 0;
      for (long v : t._2()) {
        c++;
        s += v;
      }
      return mix(t._1()) ^ mix(c * 1_000_003 + s);
    }).reduce(Long::sum);
    List<Row> rows = spark.range(0, n, 1, maps).groupBy(col("id").mod(1000).as("k"))
        .agg(count("*").as("c"), sum("id").as("s")).collectAsList();
    long df = 0;
    for (Row r : rows) {
      df += mix(r.getLong(0) * 1_000_003 + r.getLong(1) * 31 + r.getLong(2));
    }
    // Every key of i % 50,000 over [0, n) sums to a known value: check one exactly.
    long key7 = pairs.reduceByKey(Long::sum, parts).lookup(7L).get(0);
    long want7 = 0;
    for (long i = 7; i < n; i += 50_000) {
      want7 += i;
    }
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("checksum", Long.toHexString(reduced) + "/" + Long.toHexString(grouped) + "/" + Long.toHexString(df));
    m.put("exact", rows.size() == 1000 && key7 == want7);
    return m;
  }

  /** Summary of one partition of a sorted RDD: {index, count, first, last, ordered, chain}. */
  private static long[] summarize(int idx, Iterator<Long> keys) {
    long count = 0;
    long first = 0;
    long last = 0;
    long ordered = 1;
    long chain = 0;
    while (keys.hasNext()) {
      long k = keys.next();
      if (count == 0) {
        first = k;
      } else if (k < last) {
        ordered = 0;
      }
      last = k;
      chain = chain * 1_000_003 + k;
      count++;
    }
    return new long[] {idx, count, first, last, ordered, chain};
  }

  /** Checks the summaries make one sorted sequence when orderedAcross; returns checksum and exact. */
  private static Map<String, Object> check(List<long[]> parts, long want, boolean orderedAcross) {
    parts.sort((a, b) -> Long.compare(a[0], b[0]));
    long total = 0;
    long chain = 0;
    boolean ok = true;
    Long prevLast = null;
    for (long[] p : parts) {
      total += p[1];
      chain = chain * 1_000_000_007L + p[5];
      ok &= p[4] == 1;
      if (p[1] > 0) {
        ok &= !orderedAcross || prevLast == null || prevLast <= p[2];
        prevLast = p[3];
      }
    }
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("checksum", Long.toHexString(chain));
    m.put("rows", total);
    m.put("exact", ok && total == want);
    return m;
  }

  /** sortByKey over pseudo-random keys (a range partitioner, so a sampling job runs first). */
  static Map<String, Object> sort(JavaSparkContext jsc, long n, int maps, int parts) {
    JavaPairRDD<Long, Long> pairs = records(jsc, maps, n / maps, i -> new Tuple2<>(mix(i) >>> 1, i));
    List<long[]> sums = pairs.sortByKey(true, parts)
        .mapPartitionsWithIndex((idx, it) -> List.of(summarize(idx, keys(it))).iterator(), false).collect();
    return check(new ArrayList<>(sums), n, true);
  }

  private static <V> Iterator<Long> keys(Iterator<Tuple2<Long, V>> it) {
    return new Iterator<>() {
      @Override
      public boolean hasNext() {
        return it.hasNext();
      }

      @Override
      public Long next() {
        return it.next()._1();
      }
    };
  }

  /**
   * A sort-merge join whose fact side puts half its rows on key 0: with AQE's skew join on, the
   * skewed partition is read as several map ranges, and the small partitions are coalesced.
   */
  static Map<String, Object> skewJoin(SparkSession spark, long facts, long keys, int maps) {
    Dataset<Row> f = spark.range(0, facts, 1, maps)
        .select(when(col("id").mod(2).equalTo(0), lit(0L)).otherwise(col("id").mod(keys)).as("k"), col("id").as("v"));
    Dataset<Row> d = spark.range(0, keys, 1, 4).select(col("id").as("k"), concat(lit("name-"), col("id")).as("name"));
    Dataset<Row> joined = f.join(d, "k");
    Dataset<Row> agg = joined.agg(count("*"), sum("v"), sum(hash(col("name")).cast("long")));
    Row r = agg.collectAsList().get(0);
    String plan = agg.queryExecution().executedPlan().toString();
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("checksum", r.getLong(0) + "/" + r.getLong(1) + "/" + r.getLong(2));
    m.put("exact", r.getLong(0) == facts && r.getLong(1) == facts * (facts - 1) / 2);
    m.put("skew_join", plan.contains("skew=true"));
    m.put("coalesced", plan.contains("coalesced"));
    return m;
  }

  /**
   * A DataFrame aggregation over 2,500 shuffle partitions (past Spark's 2,000, so map statuses are
   * the compressed kind, and far more partitions than a map task's push buffers hold at once),
   * which AQE coalesces into a few reduce tasks that each read a range of partitions.
   */
  static Map<String, Object> wide(SparkSession spark, long n, int maps, int parts) {
    String old = spark.conf().get("spark.sql.shuffle.partitions");
    spark.conf().set("spark.sql.shuffle.partitions", Integer.toString(parts));
    try {
      Dataset<Row> agg = spark.range(0, n, 1, maps).groupBy(col("id").mod(100_000).as("k"))
          .agg(count("*").as("c"), sum("id").as("s"));
      long chk = 0;
      long rows = 0;
      boolean ok = true;
      for (Row r : agg.collectAsList()) {
        chk += mix(r.getLong(0) * 1_000_003 + r.getLong(1) * 31 + r.getLong(2));
        ok &= r.getLong(1) == n / 100_000;
        rows++;
      }
      String plan = agg.queryExecution().executedPlan().toString();
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("checksum", Long.toHexString(chk));
      m.put("rows", rows);
      m.put("exact", ok && rows == 100_000);
      m.put("coalesced", plan.contains("coalesced"));
      return m;
    } finally {
      spark.conf().set("spark.sql.shuffle.partitions", old);
    }
  }

  /**
   * A sort within few, large partitions with little execution memory (the tests run with
   * spark.memory.fraction=0.05): the reduce side's sorter spills to disk.
   */
  static Map<String, Object> spillingSort(JavaSparkContext jsc, long n, int maps, int parts) {
    JavaPairRDD<Long, String> pairs = records(jsc, maps, n / maps, i -> new Tuple2<>(mix(i), "payload-" + i + "-0123456789abcdef0123456789abcdef"));
    List<long[]> sums = pairs.repartitionAndSortWithinPartitions(new HashPartitioner(parts))
        .mapPartitionsWithIndex((idx, it) -> List.of(summarize(idx, keys(it))).iterator(), false).collect();
    return check(new ArrayList<>(sums), n, false);
  }

  /**
   * maps tasks each make records (key, 1) over keys; reduce tasks read their first record, pause
   * (Pause) and then count per key. Every key must count maps*records/keys. With inMap, the first
   * attempt of map task maps-2 pauses instead, half-way through its records (its first batches
   * already pushed), while the earlier map tasks have finished.
   */
  static Map<String, Object> pause(JavaSparkContext jsc, String dir, int maps, int parts, int records, boolean inMap) {
    long keys = 1000;
    long pauseAt = inMap ? (long) (maps - 2) * records + records / 2 : -1;
    List<Tuple2<Long, Long>> counts = records(jsc, maps, records, i -> {
      if (i == pauseAt && TaskContext.get().attemptNumber() == 0) {
        Pause.await(dir);
      }
      return new Tuple2<>(i % keys, 1L);
    }).partitionBy(new HashPartitioner(parts))
        .mapPartitionsToPair(it -> {
          Map<Long, Long> c = new HashMap<>();
          if (it.hasNext()) {
            Tuple2<Long, Long> first = it.next();
            c.merge(first._1(), first._2(), Long::sum);
            if (!inMap) {
              Pause.await(dir);
            }
          }
          it.forEachRemaining(t -> c.merge(t._1(), t._2(), Long::sum));
          List<Tuple2<Long, Long>> out = new ArrayList<>();
          c.forEach((k, v) -> out.add(new Tuple2<>(k, v)));
          return out.iterator();
        }).collect();
    boolean ok = counts.size() == keys;
    long sum = 0;
    long chk = 0;
    for (Tuple2<Long, Long> t : counts) {
      ok &= t._2() == (long) maps * records / keys;
      sum += t._2();
      chk += mix(t._1() * 1_000_003 + t._2());
    }
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("checksum", Long.toHexString(chk));
    m.put("records", sum);
    m.put("exact", ok && sum == (long) maps * records);
    return m;
  }

  /**
   * Map index m makes records (m*records + j, attempt number). Map 0's first attempt writes its
   * output, reports its end to the RSS, then stalls in a task completion listener (so its result
   * reaches the driver late): speculation launches a copy, whose result Spark registers first. Every
   * record must be read exactly once, from the attempt Spark registered.
   */
  static Map<String, Object> speculate(JavaSparkContext jsc, Stats stats, int maps, int records) {
    List<Integer> idx = new ArrayList<>();
    for (int m = 0; m < maps; m++) {
      idx.add(m);
    }
    List<Tuple2<Long, Long>> got = jsc.parallelize(idx, maps).mapPartitionsWithIndex((m, ignored) -> {
      TaskContext tc = TaskContext.get();
      long attempt = tc.attemptNumber();
      if (m == 0 && attempt == 0) {
        tc.addTaskCompletionListener(ctx -> {
          try {
            Thread.sleep(15_000);
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt(); // killed: another attempt succeeded
          }
        });
      }
      return generate(records, j -> new Tuple2<>((long) m * records + j, attempt));
    }, false).mapToPair(t -> t).partitionBy(new HashPartitioner(4)).collect();
    settle(jsc);
    int[] winner = new int[maps];
    for (int m = 0; m < maps; m++) {
      winner[m] = stats.mapWinner(m);
    }
    boolean ok = got.size() == (long) maps * records;
    boolean[] seen = new boolean[maps * records];
    for (Tuple2<Long, Long> t : got) {
      int k = Math.toIntExact(t._1());
      ok &= k >= 0 && k < seen.length && !seen[k] && t._2() == winner[k / records];
      if (k >= 0 && k < seen.length) {
        seen[k] = true;
      }
    }
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("exact", ok);
    m.put("records", got.size());
    m.put("map0_registered_attempt", winner[0]);
    return m;
  }

  /**
   * Under dynamic allocation: a job writes and reads a shuffle; the driver then idles until every
   * executor was released (their map outputs stay registered: the data is on the RSS); a second
   * job reads the same shuffle on new executors, without rerunning a map task.
   */
  static Map<String, Object> dynamic(JavaSparkContext jsc, Stats stats) throws InterruptedException {
    long n = 400_000;
    JavaPairRDD<Long, Long> sums = records(jsc, 8, n / 8, i -> new Tuple2<>(i % 1000, i)).reduceByKey(Long::sum, 8);
    long first = sums.map(t -> mix(t._1() * 31 + t._2())).reduce(Long::sum);
    long deadline = System.nanoTime() + 60_000_000_000L;
    while (jsc.sc().getExecutorIds().size() > 0 && System.nanoTime() < deadline) {
      Thread.sleep(100);
    }
    int idleAfter = jsc.sc().getExecutorIds().size();
    settle(jsc);
    long removed = ((Number) stats.toMap().get("executors_removed")).longValue();
    long again = sums.map(t -> mix(t._1() * 31 + t._2())).reduce(Long::sum);
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("exact", first == again && idleAfter == 0);
    m.put("executors_left_when_idle", idleAfter);
    m.put("executors_removed_before_reread", removed);
    m.put("checksum", Long.toHexString(again));
    return m;
  }

  /** Shuffles mib MiB of 100-byte records (8-byte key, 92-byte value) and checks every one arrived. */
  static Map<String, Object> bench(JavaSparkContext jsc, int mib, int maps, int parts) {
    long n = (long) mib * (1 << 20) / 100;
    long per = n / maps;
    JavaPairRDD<Long, byte[]> pairs = records(jsc, maps, per, i -> {
      byte[] v = new byte[92]; // pseudo-random: compression does not shrink the shuffle
      long x = mix(i);
      for (int b = 0; b < v.length; b++) {
        if ((b & 7) == 0) {
          x = mix(x + b);
        }
        v[b] = (byte) (x >>> ((b & 7) * 8));
      }
      return new Tuple2<>(x, v);
    });
    List<Long> counts = pairs.partitionBy(new HashPartitioner(parts)).mapPartitions(it -> {
      long c = 0;
      while (it.hasNext()) {
        it.next();
        c++;
      }
      return List.of(c).iterator();
    }).collect();
    long total = counts.stream().mapToLong(Long::longValue).sum();
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("records", total);
    m.put("bytes", total * 100);
    m.put("exact", total == per * maps);
    return m;
  }
}
