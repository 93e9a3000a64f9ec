package client

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one Volume's Prometheus collectors, labelled with the volume
// name. They are not registered anywhere: the application registers
// Volume.Collectors() on its registry.
type metrics struct {
	calls     *prometheus.CounterVec   // op
	bytes     *prometheus.CounterVec   // op
	errors    *prometheus.CounterVec   // op
	latency   *prometheus.HistogramVec // op
	retries   prometheus.Counter
	redirects prometheus.Counter
}

func newMetrics(volume string) *metrics {
	labels := prometheus.Labels{"volume": volume}
	opts := func(name, help string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Namespace: "basalt", Subsystem: "client", Name: name, Help: help, ConstLabels: labels}
	}
	counter := func(name, help string, vars ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(opts(name, help), vars)
	}
	return &metrics{
		calls:  counter("calls_total", "ReadAt, WriteAt and Discard calls, by op.", "op"),
		bytes:  counter("bytes_total", "Bytes read, written or discarded by successful calls, by op.", "op"),
		errors: counter("errors_total", "Calls that returned an error, by op.", "op"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "basalt", Subsystem: "client",
			Name: "latency_seconds", Help: "Duration of calls, by op.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"op"}),
		retries:   prometheus.NewCounter(opts("retries_total", "Chunkserver attempts that failed and were retried.")),
		redirects: prometheus.NewCounter(opts("redirects_total", "NotLeader answers followed.")),
	}
}

// observe records one call of op that moved n bytes.
func (m *metrics) observe(op string, start time.Time, n int64, err error) {
	m.calls.WithLabelValues(op).Inc()
	m.latency.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
		return
	}
	m.bytes.WithLabelValues(op).Add(float64(n))
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.calls, m.bytes, m.errors, m.latency, m.retries, m.redirects}
}
