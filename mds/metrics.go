package mds

import (
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

// metrics are one Server's collectors. Nothing registers them: cmd/
// registers Server.Collectors() on its registry.
type metrics struct {
	rpcs      *prometheus.CounterVec // by method
	rpcErrors *prometheus.CounterVec // by method and gRPC code
	// Gauges computed from the state at each scrape (stateCollector).
	chunkservers, copysets, volumes, segments, pending *prometheus.Desc
}

func newMetrics() *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "basalt", Subsystem: "mds", Name: name, Help: help}, labels)
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("basalt_mds_"+name, help, labels, nil)
	}
	return &metrics{
		rpcs:      counter("rpcs_total", "MDS RPCs served, by method.", "method"),
		rpcErrors: counter("rpc_errors_total", "MDS RPCs that failed, by method and gRPC code.", "method", "code"),
		chunkservers: desc("chunkservers",
			"Registered chunkservers by state: alive (a heartbeat within the TTL) or dead.", "state"),
		copysets: desc("copysets",
			"Copysets by state: healthy, degraded (a member dead) or unavailable (no known leader).", "state"),
		volumes:  desc("volumes", "Volumes."),
		segments: desc("segments_allocated", "Allocated segments, over all volumes."),
		pending:  desc("pending_chunk_deletions", "Chunks of deleted volumes not yet acknowledged deleted."),
	}
}

// observe counts one call of method that returned the status error err.
func (m *metrics) observe(method string, err error) {
	m.rpcs.WithLabelValues(method).Inc()
	if err != nil {
		m.rpcErrors.WithLabelValues(method, status.Code(err).String()).Inc()
	}
}

// stateCollector reports gauges computed from the server's state at each
// scrape, with the server's clock deciding liveness.
type stateCollector struct{ s *Server }

// Describe implements prometheus.Collector.
func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	m := c.s.metrics
	for _, d := range []*prometheus.Desc{m.chunkservers, m.copysets, m.volumes, m.segments, m.pending} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reports nothing once the
// server is closed.
func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.lock() != nil {
		return
	}
	defer c.s.mu.Unlock()
	c.s.collectLocked(ch)
}

// collectLocked sends the state gauges.
// REQUIRES: s.mu held
func (s *Server) collectLocked(ch chan<- prometheus.Metric) {
	m := s.metrics
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	alive := s.countAliveLocked()
	gauge(m.chunkservers, alive, "alive")
	gauge(m.chunkservers, len(s.mu.servers)-alive, "dead")
	counts, _ := s.copysetHealthLocked()
	for h, n := range counts {
		gauge(m.copysets, int(n), healthNames[h])
	}
	segments := 0
	for _, v := range s.mu.volumes {
		segments += int(v.segments)
	}
	gauge(m.volumes, len(s.mu.volumes))
	gauge(m.segments, segments)
	gauge(m.pending, len(s.mu.deletionOf))
}

// countAliveLocked returns how many chunkservers are alive.
// REQUIRES: s.mu held
func (s *Server) countAliveLocked() int {
	n := 0
	for _, cs := range s.mu.servers {
		if s.aliveLocked(cs) {
			n++
		}
	}
	return n
}
