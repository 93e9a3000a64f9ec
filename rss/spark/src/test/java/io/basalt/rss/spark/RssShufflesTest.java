package io.basalt.rss.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.apache.spark.storage.BlockManagerId;
import org.apache.spark.storage.BlockManagerId$;
import org.junit.jupiter.api.Test;
import scala.Option;

class RssShufflesTest {
  @Test
  void generationsHaveTheirOwnIds() {
    assertEquals(0, RssShuffles.id(0, 0));
    assertEquals(64 * 7 + 3, RssShuffles.id(7, 3));
    assertEquals(RssShuffles.id(8, 0), RssShuffles.id(7, 63) + 1);
    assertThrows(IllegalStateException.class, () -> RssShuffles.id(7, 64));
    assertThrows(IllegalStateException.class, () -> RssShuffles.id(Integer.MAX_VALUE / 64, 0));
    assertThrows(IllegalStateException.class, () -> RssShuffles.id(-1, 0));
  }

  @Test
  void theGenerationTravelsInTheLocation() {
    for (int gen : new int[] {0, 1, 63}) {
      BlockManagerId loc = RssShuffles.location(gen);
      assertEquals(RssShuffles.EXECUTOR, loc.executorId());
      assertEquals(gen, RssShuffles.generation(3, loc));
    }
    BlockManagerId executor = BlockManagerId$.MODULE$.apply("1", "10.0.0.1", 7337, Option.apply(null));
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> RssShuffles.generation(3, executor));
    assertEquals(true, e.getMessage().contains("spark.shuffle.manager"));
  }

  @Test
  void runsNameTheStageAttempt() {
    assertEquals("stage 4 attempt 1", RssShuffles.run(4, 1));
  }
}
