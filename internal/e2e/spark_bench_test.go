package e2e_test

import (
	"os"
	"strconv"
	"testing"
)

// sparkMode is one way to run a Spark job's shuffle.
type sparkMode struct {
	name string
	rss  *rssCluster // nil: Spark's own shuffle
	conf []string
}

// sparkModes returns Spark's own shuffle (the baseline) and the RSS with
// and without replicas.
func sparkModes(rss *rssCluster) []sparkMode {
	return []sparkMode{
		{name: "spark-shuffle"},
		{name: "rss", rss: rss},
		{name: "rss-no-replica", rss: rss, conf: []string{"spark.basalt.rss.replicate=false"}},
	}
}

// reportSpark reports a job's wall time and its stages' times.
func reportSpark(b *testing.B, r sparkResult) {
	b.ReportMetric(float64(r.Millis)/1000, "job-s")
	b.ReportMetric(float64(r.Stats.MapTasksEnded), "map-tasks")
	b.Logf("stages: %v; shuffle bytes written %d, read %d", r.Stats.Stages, r.Stats.ShuffleBytesWritten, r.Stats.ShuffleBytesRead)
}

// BenchmarkSparkShuffle measures the wall time of a shuffle-heavy Spark
// job (Jobs bench: BASALT_SPARK_BENCH_MIB MiB, default 2048, of 100-byte
// pseudo-random records in 8 map tasks, partitionBy 16 partitions, every
// record counted on the reduce side) with Spark's own shuffle and with the
// RSS (with and without replicas), on the same Spark and RSS processes in
// one run. Figures: docs/benchmarks.md.
//
//	go test -run '^$' -bench BenchmarkSparkShuffle -benchtime 1x -timeout 60m ./internal/e2e/
func BenchmarkSparkShuffle(b *testing.B) {
	mib := 2048
	if v, err := strconv.Atoi(os.Getenv("BASALT_SPARK_BENCH_MIB")); err == nil {
		mib = v
	}
	sc := sparkOf(b, spark3)
	rss := startRSS(b, 2)
	for _, m := range sparkModes(rss) {
		b.Run(m.name, func(b *testing.B) {
			for b.Loop() {
				job := sparkJob{job: "bench", args: []string{strconv.Itoa(mib), "8", "16"}, rss: m.rss, conf: m.conf}
				r := sc.submit(b, job).wait()
				var res jobResult
				r.job(b, "bench", &res)
				if !res.Exact {
					b.Fatal("records were lost or duplicated")
				}
				reportSpark(b, r)
			}
		})
	}
}

// BenchmarkSparkEviction measures the executor-eviction job of
// TestSparkExecutorLossRerunsNoMapTask with heavier maps (8 maps of
// 4,000,000 records): an executor is killed with SIGKILL once the reduce
// stage runs. Spark's own shuffle reruns the lost map outputs; the RSS
// reruns nothing.
//
//	go test -run '^$' -bench BenchmarkSparkEviction -benchtime 1x -timeout 60m ./internal/e2e/
func BenchmarkSparkEviction(b *testing.B) {
	sc := sparkOf(b, spark3)
	rss := startRSS(b, 2)
	for _, m := range sparkModes(rss)[:2] {
		b.Run(m.name, func(b *testing.B) {
			for b.Loop() {
				dir := pauseDir(b)
				app := sc.submit(b, sparkJob{job: "pause", args: []string{dir, "8", "8", "4000000"}, rss: m.rss})
				killExecutor(b, waitPaused(b, app, dir))
				resume(b, dir)
				r := app.wait()
				pauseResult(b, r)
				reportSpark(b, r)
			}
		})
	}
}
