package io.basalt.rss.jobs;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.apache.spark.FetchFailed;
import org.apache.spark.Success$;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerExecutorRemoved;
import org.apache.spark.scheduler.SparkListenerStageCompleted;
import org.apache.spark.scheduler.StageInfo;
import org.apache.spark.scheduler.SparkListenerStageSubmitted;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.scheduler.SparkListenerTaskStart;

/**
 * Counts what the scheduler did, as a user would read it off the event log: tasks by type and
 * outcome, fetch failures, stage reruns, speculative launches, lost executors, spills, and which
 * attempt of each map task Spark registered last.
 */
final class Stats extends SparkListener {
  private int mapTasksEnded;
  private int mapTasksSucceeded;
  private int resultTasksEnded;
  private int fetchFailures;
  private int stageReruns;
  private int speculativeLaunched;
  private int executorsRemoved;
  private long memorySpilled;
  private long diskSpilled;
  private long shuffleBytesWritten;
  private long shuffleBytesRead;
  private long shuffleRecordsRead;
  private long shuffleWriteNanos;
  private long shuffleRecordsWritten;
  private final List<String> stages = new ArrayList<>();
  // "stage/index" -> attempt number of the last successful map task attempt
  private final Map<String, Integer> mapWinners = new TreeMap<>();

  @Override
  public synchronized void onStageSubmitted(SparkListenerStageSubmitted e) {
    if (e.stageInfo().attemptNumber() > 0) {
      stageReruns++;
    }
  }

  @Override
  public synchronized void onStageCompleted(SparkListenerStageCompleted e) {
    StageInfo s = e.stageInfo();
    long ms = s.completionTime().isDefined() && s.submissionTime().isDefined()
        ? (long) s.completionTime().get() - (long) s.submissionTime().get() : -1;
    stages.add(s.stageId() + "." + s.attemptNumber() + " " + (s.shuffleDepId().isDefined() ? "map" : "result")
        + " tasks=" + s.numTasks() + " ms=" + ms);
  }

  @Override
  public synchronized void onTaskStart(SparkListenerTaskStart e) {
    if (e.taskInfo().speculative()) {
      speculativeLaunched++;
    }
  }

  @Override
  public synchronized void onTaskEnd(SparkListenerTaskEnd e) {
    boolean map = "ShuffleMapTask".equals(e.taskType());
    boolean ok = e.reason() == Success$.MODULE$;
    if (map) {
      mapTasksEnded++;
      if (ok) {
        mapTasksSucceeded++;
        mapWinners.put(e.stageId() + "/" + e.taskInfo().index(), e.taskInfo().attemptNumber());
      }
    } else {
      resultTasksEnded++;
    }
    if (e.reason() instanceof FetchFailed) {
      fetchFailures++;
    }
    if (e.taskMetrics() != null) {
      memorySpilled += e.taskMetrics().memoryBytesSpilled();
      diskSpilled += e.taskMetrics().diskBytesSpilled();
      shuffleBytesWritten += e.taskMetrics().shuffleWriteMetrics().bytesWritten();
      shuffleBytesRead += e.taskMetrics().shuffleReadMetrics().totalBytesRead();
      shuffleRecordsRead += e.taskMetrics().shuffleReadMetrics().recordsRead();
      shuffleWriteNanos += e.taskMetrics().shuffleWriteMetrics().writeTime();
      shuffleRecordsWritten += e.taskMetrics().shuffleWriteMetrics().recordsWritten();
    }
  }

  @Override
  public synchronized void onExecutorRemoved(SparkListenerExecutorRemoved e) {
    executorsRemoved++;
  }

  /** Returns the attempt number of the last successful attempt of map task index (any stage), or -1. */
  synchronized int mapWinner(int index) {
    int w = -1;
    for (Map.Entry<String, Integer> e : mapWinners.entrySet()) {
      if (e.getKey().endsWith("/" + index)) {
        w = e.getValue();
      }
    }
    return w;
  }

  /** The counts as a JSON-ready map. */
  synchronized Map<String, Object> toMap() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("map_tasks_ended", mapTasksEnded);
    m.put("map_tasks_succeeded", mapTasksSucceeded);
    m.put("result_tasks_ended", resultTasksEnded);
    m.put("fetch_failures", fetchFailures);
    m.put("stage_reruns", stageReruns);
    m.put("speculative_launched", speculativeLaunched);
    m.put("executors_removed", executorsRemoved);
    m.put("memory_spilled", memorySpilled);
    m.put("disk_spilled", diskSpilled);
    m.put("shuffle_bytes_written", shuffleBytesWritten);
    m.put("shuffle_bytes_read", shuffleBytesRead);
    m.put("shuffle_records_read", shuffleRecordsRead);
    m.put("shuffle_records_written", shuffleRecordsWritten);
    m.put("shuffle_write_nanos", shuffleWriteNanos);
    m.put("stages", new ArrayList<>(stages));
    return m;
  }
}
