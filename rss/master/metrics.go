package master

import (
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

// metrics are one Server's collectors. Nothing registers them: cmd/
// registers Server.Collectors() on its registry.
type metrics struct {
	rpcs      *prometheus.CounterVec // by method
	rpcErrors *prometheus.CounterVec // by method and gRPC code
	mapEnds   *prometheus.CounterVec // by result: won or ignored
	commits   *prometheus.CounterVec // by result: ok or failed
	// Gauges computed at each scrape (stateCollector).
	applications, shuffles, workers, leader, deletions *prometheus.Desc
}

func newMetrics() *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "basalt", Subsystem: "rss_master", Name: name, Help: help}, labels)
	}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("basalt_rss_master_"+name, help, nil, nil)
	}
	return &metrics{
		rpcs:         counter("rpcs_total", "RSS master RPCs served, by method.", "method"),
		rpcErrors:    counter("rpc_errors_total", "RSS master RPCs that failed, by method and gRPC code.", "method", "code"),
		mapEnds:      counter("map_ends_total", "MapEnd reports, by result: won (the map's winning attempt) or ignored (a later attempt).", "result"),
		commits:      counter("commits_total", "CommitShuffle calls that reached the workers or found the shuffle committed, by result: ok or failed.", "result"),
		applications: desc("applications", "Registered applications."),
		shuffles:     desc("active_shuffles", "Registered shuffles, committed or not, over all applications."),
		workers:      desc("live_workers", "Live workers in the gossip membership."),
		deletions:    desc("pending_deletions", "Removed applications and shuffles whose files some worker has not deleted yet."),
		leader:       desc("leader", "1 while this master carries out the State's duties (the raft leader, or the only master), else 0."),
	}
}

// observe counts one call of method that returned the status error err.
func (m *metrics) observe(method string, err error) {
	m.rpcs.WithLabelValues(method).Inc()
	if err != nil {
		m.rpcErrors.WithLabelValues(method, status.Code(err).String()).Inc()
	}
}

// mapEnd counts one MapEnd result.
func (m *metrics) mapEnd(won bool) {
	result := "ignored"
	if won {
		result = "won"
	}
	m.mapEnds.WithLabelValues(result).Inc()
}

// commit counts one commit outcome.
func (m *metrics) commit(err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	m.commits.WithLabelValues(result).Inc()
}

// stateCollector reports gauges computed at each scrape.
type stateCollector struct{ s *Server }

// Describe implements prometheus.Collector.
func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	m := c.s.metrics
	for _, d := range []*prometheus.Desc{m.applications, m.shuffles, m.workers, m.leader, m.deletions} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reports nothing once the
// server is closed. The counts are this master's (a follower's may lag).
func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.checkOpen() != nil {
		return
	}
	var n struct{ apps, shuffles, deletions int }
	_ = c.s.store.peek(func(st *State) error {
		n.apps, n.shuffles = st.Counts()
		n.deletions = len(st.PendingDeletions())
		return nil
	})
	m := c.s.metrics
	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	gauge(m.applications, n.apps)
	gauge(m.shuffles, n.shuffles)
	gauge(m.deletions, n.deletions)
	gauge(m.workers, len(c.s.workers()))
	leader := 0
	if c.s.Leading() {
		leader = 1
	}
	gauge(m.leader, leader)
}
