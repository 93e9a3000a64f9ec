package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a pushed batch is refused (the "reason" label of
// basalt_rss_worker_push_rejected_total).
const (
	rejectMemory    = "memory"
	rejectAppMemory = "app_memory"
	rejectDiskFull  = "disk_full"
	rejectCRC       = "crc"
	rejectCommitted = "committed"
	rejectInvalid   = "invalid"
)

// metrics are one Worker's collectors. Nothing registers them: cmd/ (via
// RunDaemon) registers Worker.Collectors() on its registry.
type metrics struct {
	pushedBytes   *prometheus.CounterVec // by stream: push or replicate
	pushedBatches *prometheus.CounterVec // by stream
	fetchedBytes  prometheus.Counter
	rejected      *prometheus.CounterVec // by reason
	// Gauges read from the worker at each scrape (gaugeCollector).
	active, memUsed, memLimit, diskFree, decommissioning *prometheus.Desc
}

func newMetrics() *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "basalt", Subsystem: "rss_worker", Name: name, Help: help}, labels)
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("basalt_rss_worker_"+name, help, labels, nil)
	}
	m := &metrics{
		pushedBytes:   counter("pushed_bytes_total", "Batch data bytes stored, by stream: push (as primary) or replicate (as replica).", "stream"),
		pushedBatches: counter("pushed_batches_total", "Batches stored, by stream: push or replicate.", "stream"),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "basalt", Subsystem: "rss_worker",
			Name: "fetched_bytes_total", Help: "Batch data bytes sent to readers."}),
		rejected: counter("push_rejected_total",
			"Pushed or replicated batches refused, by reason: memory, disk_full, crc, committed, invalid.", "reason"),
		active:   desc("active_partitions", "Partition files open for writing (not yet committed)."),
		memUsed:  desc("memory_used_bytes", "Bytes of batches received and not yet acknowledged."),
		memLimit: desc("memory_limit_bytes", "The admission budget (Config.MemoryLimitBytes)."),
		diskFree: desc("disk_free_bytes", "Free bytes on each data directory's filesystem.", "dir"),
		decommissioning: desc("decommissioning",
			"1 while the worker decommissions (takes no new pushes; serves committed data until its applications end), else 0."),
	}
	for _, k := range []string{kindPush, kindReplicate} {
		m.pushedBytes.WithLabelValues(k)
		m.pushedBatches.WithLabelValues(k)
	}
	for _, r := range []string{rejectMemory, rejectAppMemory, rejectDiskFull, rejectCRC, rejectCommitted, rejectInvalid} {
		m.rejected.WithLabelValues(r)
	}
	return m
}

// gaugeCollector reports the gauges computed from the Worker at each
// scrape.
type gaugeCollector struct{ w *Worker }

// Describe implements prometheus.Collector.
func (c gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	m := c.w.metrics
	for _, d := range []*prometheus.Desc{m.active, m.memUsed, m.memLimit, m.diskFree, m.decommissioning} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	m, w := c.w.metrics, c.w
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(m.active, float64(w.ActivePartitions()))
	gauge(m.memUsed, float64(w.MemoryUsedBytes()))
	gauge(m.memLimit, float64(w.cfg.MemoryLimitBytes))
	decommissioning := 0.0
	if w.Decommissioning() {
		decommissioning = 1
	}
	gauge(m.decommissioning, decommissioning)
	for _, dir := range w.cfg.Dirs {
		if free, err := w.dirFree(dir); err == nil {
			gauge(m.diskFree, float64(free), dir)
		}
	}
}

// Collectors returns the Worker's Prometheus collectors, for the caller to
// register.
func (w *Worker) Collectors() []prometheus.Collector {
	m := w.metrics
	return []prometheus.Collector{m.pushedBytes, m.pushedBatches, m.fetchedBytes, m.rejected, gaugeCollector{w}}
}
