package io.basalt.rss.jobs;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.apache.spark.TaskContext;

/**
 * A rendezvous between a running task and the test that drives the job: the task writes a marker
 * naming its executor's process id, then waits until the test creates the file "go" (after it has
 * killed something). Tasks that start after "go" exists do not wait.
 */
final class Pause {
  private Pause() {}

  /** Writes this task's marker into dir and waits (up to two minutes) for dir/go. */
  static void await(String dir) {
    Path go = Path.of(dir, "go");
    if (Files.exists(go)) {
      return;
    }
    TaskContext tc = TaskContext.get();
    String name = "task-" + tc.stageId() + "-" + tc.partitionId() + "-" + tc.attemptNumber() + ".pid";
    try {
      Path tmp = Path.of(dir, name + ".tmp");
      Files.writeString(tmp, Long.toString(ProcessHandle.current().pid()), StandardCharsets.UTF_8);
      Files.move(tmp, Path.of(dir, name));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    long deadline = System.nanoTime() + 120_000_000_000L;
    while (!Files.exists(go)) {
      if (System.nanoTime() - deadline > 0) {
        throw new IllegalStateException("the test never created " + go);
      }
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while paused", e);
      }
    }
  }
}
