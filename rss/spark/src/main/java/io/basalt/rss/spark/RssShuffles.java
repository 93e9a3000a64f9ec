package io.basalt.rss.spark;

import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.BlockManagerId$;
import scala.Option;

/**
 * How a Spark shuffle maps onto RSS shuffles. Every run of a shuffle's map stage (a stage attempt;
 * Spark reruns a map stage when a reader found its data lost) writes its own RSS shuffle, a
 * <em>generation</em>: RSS id = Spark shuffle id * {@link #GENERATIONS} + generation. A run claims
 * the lowest generation no other run holds (the master refuses a second run on an id), so a rerun
 * never writes into a shuffle that an earlier run wrote and perhaps committed. The generation
 * travels to readers in the map status's location: every map output "lives" at a block manager no
 * executor owns ({@link #EXECUTOR}), whose port is 1 + the generation, so losing an executor never
 * unregisters it, while a fetch failure (which names that location) unregisters them all and
 * makes Spark rerun the map stage.
 */
final class RssShuffles {
  /** Runs of one shuffle's map stage the RSS can hold; the 65th rerun fails its tasks. */
  static final int GENERATIONS = 64;

  /** The executor id (and host) of every map output's location. */
  static final String EXECUTOR = "basalt-rss";

  private RssShuffles() {}

  /** Returns the RSS shuffle id of generation gen of Spark shuffle id. */
  static int id(int shuffle, int gen) {
    if (shuffle < 0 || shuffle >= Integer.MAX_VALUE / GENERATIONS || gen < 0 || gen >= GENERATIONS) {
      throw new IllegalStateException("Spark shuffle " + shuffle + " generation " + gen
          + " has no RSS shuffle id (at most " + (Integer.MAX_VALUE / GENERATIONS) + " shuffles of " + GENERATIONS + " runs)");
    }
    return shuffle * GENERATIONS + gen;
  }

  /** Returns the location of the map outputs of generation gen. */
  static BlockManagerId location(int gen) {
    return BlockManagerId$.MODULE$.apply(EXECUTOR, EXECUTOR, gen + 1, Option.apply(null));
  }

  /** Returns the generation of a map output's location. */
  static int generation(int shuffle, BlockManagerId loc) {
    int gen = loc.port() - 1;
    if (!EXECUTOR.equals(loc.executorId()) || gen < 0 || gen >= GENERATIONS) {
      throw new IllegalStateException("a map output of shuffle " + shuffle + " is at " + loc
          + ", not on the Basalt RSS: every executor and the driver need spark.shuffle.manager=" + BasaltShuffleManager.class.getName());
    }
    return gen;
  }

  /** Names the run of a map stage: its id and attempt, the same for every task of the attempt. */
  static String run(int stageId, int stageAttempt) {
    return "stage " + stageId + " attempt " + stageAttempt;
  }
}
