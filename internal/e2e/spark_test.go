package e2e_test

import (
	"encoding/json"
	"testing"
	"time"
)

// These tests run real Spark 3.5 applications (spark-submit, a standalone
// master and two workers, executor JVMs) against an RSS master and two
// workers running as processes, with the plugin configured the way
// docs/spark.md tells a user to. The jobs are rss/spark's Jobs.java; each
// checks its own result and reports what the scheduler did.

// TestSparkJobsMatchSparkShuffle runs a groupBy/aggregate (RDD with and
// without map-side combine, and DataFrame), a sort, a join with AQE on and
// a skewed key (so skew splits read map ranges and small partitions are
// coalesced into partition ranges), a 2,500-partition aggregation and a
// sort that spills, once with the Basalt RSS and once with Spark's own
// shuffle: every result must be exact and identical.
func TestSparkJobsMatchSparkShuffle(t *testing.T) {
	sc := spark(t)
	rss := startRSS(t, 2)
	suite := sparkJob{job: "suite", conf: []string{
		"spark.memory.fraction=0.05", // little execution memory: the reduce-side sort spills
		"spark.sql.autoBroadcastJoinThreshold=-1",
		"spark.sql.shuffle.partitions=16",
		"spark.sql.adaptive.enabled=true",
		"spark.sql.adaptive.skewJoin.skewedPartitionFactor=2",
		"spark.sql.adaptive.skewJoin.skewedPartitionThresholdInBytes=1m",
		"spark.sql.adaptive.advisoryPartitionSizeInBytes=1m",
	}}
	withRSS := suite
	withRSS.rss = rss
	basalt := sc.submit(t, withRSS).wait()
	own := sc.submit(t, suite).wait()

	for _, name := range []string{"groupby", "sort", "join", "wide", "spill"} {
		var b, o jobResult
		basalt.job(t, name, &b)
		own.job(t, name, &o)
		if !b.Exact || !o.Exact {
			t.Errorf("%s: exact with the RSS %v, with Spark's shuffle %v", name, b.Exact, o.Exact)
		}
		if b.Checksum != o.Checksum {
			t.Errorf("%s: result %s with the RSS, %s with Spark's shuffle", name, b.Checksum, o.Checksum)
		}
		t.Logf("%s: %d ms with the RSS, %d ms with Spark's shuffle", name, b.Millis, o.Millis)
	}
	var join struct {
		SkewJoin  bool `json:"skew_join"`
		Coalesced bool `json:"coalesced"`
	}
	basalt.job(t, "join", &join)
	if !join.SkewJoin || !join.Coalesced {
		t.Errorf("AQE: skew join %v, coalesced reads %v; want both (the test must exercise map and partition ranges)", join.SkewJoin, join.Coalesced)
	}
	var spill struct {
		MemorySpilled int64 `json:"memory_spilled"`
	}
	basalt.job(t, "spill", &spill)
	if spill.MemorySpilled == 0 {
		t.Error("the spilling sort did not spill")
	}
	st := basalt.Stats
	if st.FetchFailures != 0 || st.StageReruns != 0 || st.MapTasksEnded != st.MapTasksSucceeded {
		t.Errorf("with the RSS: %d fetch failures, %d stage reruns, %d of %d map tasks succeeded; want none, none, all",
			st.FetchFailures, st.StageReruns, st.MapTasksSucceeded, st.MapTasksEnded)
	}
	// Shuffle metrics reach Spark's task metrics (what the UI shows): the
	// same records as Spark's own shuffle, bytes, write time.
	if st.ShuffleBytesWritten == 0 || st.ShuffleBytesRead == 0 || st.ShuffleWriteNanos == 0 ||
		st.ShuffleRecordsRead != own.Stats.ShuffleRecordsRead || st.ShuffleRecordsWrote != own.Stats.ShuffleRecordsWrote {
		t.Errorf("task metrics: %d shuffle bytes written in %d ns, %d read, %d records written, %d read (Spark's shuffle: %d, %d records)",
			st.ShuffleBytesWritten, st.ShuffleWriteNanos, st.ShuffleBytesRead, st.ShuffleRecordsWrote, st.ShuffleRecordsRead,
			own.Stats.ShuffleRecordsWrote, own.Stats.ShuffleRecordsRead)
	}
	// The application unregistered when it stopped: its files are deleted.
	waitMetric(t, rss.masters[0], "basalt_rss_master_pending_deletions", 0)
	if n := rss.masters[0].mustMetric(t, "basalt_rss_master_applications"); n != 0 {
		t.Errorf("%v applications registered after the Spark application stopped, want 0", n)
	}
}

// pauseJob is the job the loss tests run: 8 maps of 400,000 records, 8
// reduce partitions; reduce tasks pause after their first record. Small
// push batches make each partition many batches, so a fetch is cut in the
// middle when its worker dies.
func pauseJob(dir string, rss *rssCluster, conf ...string) sparkJob {
	if rss != nil {
		conf = append(conf, "spark.basalt.rss.push.bufferSize=16k")
	}
	return sparkJob{job: "pause", args: []string{dir, "8", "8", "400000"}, conf: conf, rss: rss}
}

const pauseMaps = 8

// pauseResult decodes and checks the pause job's result.
func pauseResult(t testing.TB, r sparkResult) {
	t.Helper()
	var p jobResult
	r.job(t, "pause", &p)
	if !p.Exact {
		t.Errorf("the pause job's result is not exact")
	}
}

// TestSparkExecutorLossRerunsNoMapTask kills an executor JVM with SIGKILL
// while the reduce stage runs (the map stage has finished). With the RSS
// the job completes with the right result, no map task runs twice and no
// fetch fails; with Spark's own shuffle the same job reruns map tasks.
func TestSparkExecutorLossRerunsNoMapTask(t *testing.T) {
	sc := spark(t)
	basalt := evictExecutor(t, sc, startRSS(t, 2))
	own := evictExecutor(t, sc, nil)
	if st := own.Stats; st.MapTasksEnded <= pauseMaps {
		t.Errorf("with Spark's shuffle %d map tasks ran; the lost executor's map outputs should have been recomputed", st.MapTasksEnded)
	}
	t.Logf("executor killed in the reduce stage: %d ms and %d map tasks with the RSS, %d ms and %d map tasks (%d fetch failures) with Spark's shuffle",
		basalt.Millis, basalt.Stats.MapTasksEnded, own.Millis, own.Stats.MapTasksEnded, own.Stats.FetchFailures)
}

// TestSparkExecutorLossDuringTheMapStage kills an executor while the map
// stage runs: one map task is half-way through (its first batches pushed
// to the RSS), the ones before it have finished. With the RSS only the
// killed task runs again, and its partial output is never read; with
// Spark's own shuffle the lost executor's finished map tasks rerun too.
func TestSparkExecutorLossDuringTheMapStage(t *testing.T) {
	sc := spark(t)
	rss := startRSS(t, 2)
	run := func(rss *rssCluster) sparkResult {
		dir := pauseDir(t)
		job := pauseJob(dir, rss)
		job.args = append(job.args, "map")
		app := sc.submit(t, job)
		killExecutor(t, waitPaused(t, app, dir))
		resume(t, dir)
		r := app.wait()
		pauseResult(t, r)
		return r
	}
	basalt, own := run(rss).Stats, run(nil).Stats
	if st := basalt; st.MapTasksSucceeded != pauseMaps || st.MapTasksEnded != pauseMaps+1 || st.FetchFailures != 0 {
		t.Errorf("with the RSS: %d map tasks succeeded of %d ended, %d fetch failures; want %d of %d (only the killed task again), none",
			st.MapTasksSucceeded, st.MapTasksEnded, st.FetchFailures, pauseMaps, pauseMaps+1)
	}
	if own.MapTasksSucceeded <= pauseMaps {
		t.Errorf("with Spark's shuffle %d map tasks succeeded; the lost executor's finished map tasks should have rerun", own.MapTasksSucceeded)
	}
	t.Logf("executor killed in the map stage: %d map tasks succeeded with the RSS, %d with Spark's shuffle", basalt.MapTasksSucceeded, own.MapTasksSucceeded)
}

// TestSpark4ExecutorLossRerunsNoMapTask is the eviction test on Spark 4
// (Scala 2.13), with the plugin built by the spark4 Maven profile.
func TestSpark4ExecutorLossRerunsNoMapTask(t *testing.T) {
	evictExecutor(t, sparkOf(t, spark4), startRSS(t, 2))
}

// evictExecutor runs the pause job and kills an executor running a reduce
// task once the map stage is over. With rss (nil: Spark's own shuffle) it
// checks that no map task ran twice, no fetch failed and no stage reran.
func evictExecutor(t testing.TB, sc *sparkCluster, rss *rssCluster) sparkResult {
	t.Helper()
	dir := pauseDir(t)
	app := sc.submit(t, pauseJob(dir, rss))
	killExecutor(t, waitPaused(t, app, dir))
	resume(t, dir)
	r := app.wait()
	pauseResult(t, r)
	if r.Stats.ExecutorsRemoved == 0 {
		t.Errorf("no executor was lost")
	}
	if st := r.Stats; rss != nil && (st.MapTasksEnded != pauseMaps || st.FetchFailures != 0 || st.StageReruns != 0) {
		t.Errorf("with the RSS: %d map tasks ran (want %d), %d fetch failures, %d stage reruns; want none rerun",
			st.MapTasksEnded, pauseMaps, st.FetchFailures, st.StageReruns)
	}
	return r
}

// TestSparkRSSWorkerLossReadsReplicas kills an RSS worker with SIGKILL
// after the map stage, while reduce tasks are reading (each has read its
// first batch): every partition has a copy on the other worker, so the
// job completes exactly, with no fetch failure and no map task rerun.
func TestSparkRSSWorkerLossReadsReplicas(t *testing.T) {
	sc := spark(t)
	rss := startRSS(t, 2)
	dir := pauseDir(t)
	// A token of our choosing lets the test read the application's shuffle.
	const token = "spark-worker-loss-test-0123456789abcdef"
	app := sc.submit(t, pauseJob(dir, rss, "spark.basalt.rss.appToken="+token))
	waitPaused(t, app, dir)
	mc := appMasterClient(t, rss, sparkAppID(t, rss), token)
	if n := countOn(t, mc, 0, "worker0", true); n == 0 { // RSS shuffle 0: Spark shuffle 0, generation 0
		t.Fatal("worker0 is primary of no partition; killing it would prove nothing")
	}
	rss.workers[0].kill9()
	resume(t, dir)
	r := app.wait()
	pauseResult(t, r)
	if st := r.Stats; st.MapTasksEnded != pauseMaps || st.FetchFailures != 0 {
		t.Errorf("%d map tasks ran (want %d), %d fetch failures (want 0)", st.MapTasksEnded, pauseMaps, st.FetchFailures)
	}
}

// sparkAppID returns the id of the one application registered with the
// RSS (the running Spark application).
func sparkAppID(t *testing.T, rss *rssCluster) string {
	t.Helper()
	out, _, err := basaltCLI("rss", "status", "--master", rss.masterRPC, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Applications []struct {
			AppID string `json:"app_id"`
		} `json:"applications"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Applications) != 1 {
		t.Fatalf("rss status: %v, %d applications in %s; want one", err, len(st.Applications), out)
	}
	return st.Applications[0].AppID
}

// TestSparkLostShuffleRerunsMapStage: without replicas, killing an RSS
// worker loses the partitions it held. Readers then fail with a fetch
// failure (not a task error), Spark reruns the map stage, the rerun
// writes a new generation of the shuffle, and the job still ends exactly.
func TestSparkLostShuffleRerunsMapStage(t *testing.T) {
	sc := spark(t)
	rss := startRSS(t, 2)
	dir := pauseDir(t)
	app := sc.submit(t, pauseJob(dir, rss, "spark.basalt.rss.replicate=false", "spark.basalt.rss.retryDeadline=5s"))
	waitPaused(t, app, dir)
	rss.workers[0].kill9()
	resume(t, dir)
	r := app.wait()
	pauseResult(t, r)
	if st := r.Stats; st.FetchFailures == 0 || st.MapTasksEnded != 2*pauseMaps {
		t.Errorf("%d fetch failures, %d map tasks; want fetch failures and the map stage run twice (%d tasks)",
			st.FetchFailures, st.MapTasksEnded, 2*pauseMaps)
	}
}

// TestSparkSpeculationReadsTheRegisteredAttempt runs with speculation on.
// Map 0's first attempt pushes its output and reports its end to the RSS
// first, then stalls before its result reaches the driver; speculation
// launches a copy on the other host whose result Spark registers. Each
// attempt tags its records with its attempt number: the reducers must
// read every record once, from the attempt Spark registered, not from the
// one the RSS saw end first.
func TestSparkSpeculationReadsTheRegisteredAttempt(t *testing.T) {
	sc := spark(t)
	rss := startRSS(t, 2)
	r := sc.submit(t, sparkJob{job: "speculate", args: []string{"4", "50000"}, rss: rss, conf: []string{
		"spark.speculation=true", "spark.speculation.interval=100ms", "spark.speculation.multiplier=2",
		"spark.speculation.quantile=0.5", "spark.speculation.minTaskRuntime=1s",
	}}).wait()
	var spec struct {
		Exact      bool `json:"exact"`
		Registered int  `json:"map0_registered_attempt"`
	}
	r.job(t, "speculate", &spec)
	if !spec.Exact {
		t.Error("records were lost, duplicated or read from an attempt Spark did not register")
	}
	if r.Stats.SpeculativeLaunched == 0 || spec.Registered != 1 {
		t.Errorf("%d speculative tasks launched, map 0's registered attempt %d; want the speculative copy (1) registered",
			r.Stats.SpeculativeLaunched, spec.Registered)
	}
	// The RSS saw the first attempt end first: the copy's end was ignored.
	if n := rss.masters[0].mustMetric(t, `basalt_rss_master_map_ends_total{result="ignored"}`); n < 1 {
		t.Errorf("the RSS recorded %v ignored map ends; the original attempt should have ended first", n)
	}
}

// TestSparkDynamicAllocationWithoutShuffleService runs with dynamic
// allocation and neither an external shuffle service nor shuffle
// tracking: Spark accepts it because the plugin reports reliable storage.
// Every executor is released while the shuffle is still needed; a second
// job reads it on new executors without rerunning a map task. Spark's own
// shuffle refuses to start with these settings.
func TestSparkDynamicAllocationWithoutShuffleService(t *testing.T) {
	sc := spark(t)
	rss := startRSS(t, 2)
	conf := []string{
		"spark.dynamicAllocation.enabled=true", "spark.dynamicAllocation.shuffleTracking.enabled=false",
		"spark.dynamicAllocation.executorIdleTimeout=1s", "spark.dynamicAllocation.maxExecutors=2",
	}
	r := sc.submit(t, sparkJob{job: "dynamic", rss: rss, conf: conf}).wait()
	var dyn struct {
		Exact   bool `json:"exact"`
		Removed int  `json:"executors_removed_before_reread"`
	}
	r.job(t, "dynamic", &dyn)
	if !dyn.Exact || dyn.Removed == 0 {
		t.Errorf("exact %v, %d executors released before the shuffle was read again; want exact and at least one", dyn.Exact, dyn.Removed)
	}
	if st := r.Stats; st.MapTasksEnded != 8 || st.FetchFailures != 0 {
		t.Errorf("%d map tasks ran (want 8), %d fetch failures (want 0)", st.MapTasksEnded, st.FetchFailures)
	}
	if err := sc.submit(t, sparkJob{job: "dynamic", conf: conf}).exit(2 * time.Minute); err == nil {
		t.Error("Spark's own shuffle ran with dynamic allocation and no shuffle service; expected Spark to refuse")
	}
}
