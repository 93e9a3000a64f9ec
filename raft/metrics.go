package raft

import "github.com/prometheus/client_golang/prometheus"

// metrics are one host's Prometheus collectors. They are not registered
// anywhere: cmd/ registers Host.Collectors() on its registry.
type metrics struct {
	proposals       prometheus.Counter
	proposalsFailed prometheus.Counter
	commitLatency   prometheus.Histogram
	readyRounds     prometheus.Counter
	fsyncs          prometheus.Counter
	entriesPerFsync prometheus.Histogram
	fsyncLatency    prometheus.Histogram
	elections       prometheus.Counter
	snapBytesSent   prometheus.Counter
	snapBytesRecv   prometheus.Counter
	snapshotsSent   prometheus.Counter
	snapshotsRecv   prometheus.Counter
	groups          prometheus.Gauge
	leaders         prometheus.Gauge
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "basalt", Subsystem: "raft", Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "basalt", Subsystem: "raft", Name: name, Help: help})
	}
	h := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "basalt", Subsystem: "raft", Name: name, Help: help, Buckets: buckets})
	}
	latency := prometheus.ExponentialBuckets(0.0001, 2, 16) // 100µs .. ~3.3s
	return &metrics{
		proposals:       c("proposals_total", "Proposals submitted on this host."),
		proposalsFailed: c("proposals_failed_total", "Proposals that returned an error other than an application error."),
		commitLatency:   h("commit_latency_seconds", "Time from proposal to applied on the proposing host.", latency),
		readyRounds:     c("ready_rounds_total", "Ready rounds that persisted at least one group."),
		fsyncs:          c("fsyncs_total", "Synced Pebble batch commits of the raft log (one per Ready round that needed it)."),
		entriesPerFsync: h("entries_per_fsync", "Log entries written per synced batch (group commit).", prometheus.ExponentialBuckets(1, 2, 14)),
		fsyncLatency:    h("fsync_latency_seconds", "Duration of a synced batch commit.", latency),
		elections:       c("elections_won_total", "Times a replica on this host became leader."),
		snapBytesSent:   c("snapshot_sent_bytes_total", "Snapshot bytes streamed to other hosts."),
		snapBytesRecv:   c("snapshot_received_bytes_total", "Snapshot bytes received and staged."),
		snapshotsSent:   c("snapshots_sent_total", "Snapshots streamed to other hosts."),
		snapshotsRecv:   c("snapshots_received_total", "Snapshots received and staged."),
		groups:          g("groups", "Raft groups hosted."),
		leaders:         g("leaders", "Groups whose leader is on this host."),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.proposals, m.proposalsFailed, m.commitLatency, m.readyRounds, m.fsyncs,
		m.entriesPerFsync, m.fsyncLatency, m.elections, m.snapBytesSent, m.snapBytesRecv,
		m.snapshotsSent, m.snapshotsRecv, m.groups, m.leaders,
	}
}
