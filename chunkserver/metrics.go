package chunkserver

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	writeBytes, readBytes, heartbeats, checkpoints prometheus.Counter
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "basalt", Subsystem: "chunkserver", Name: name, Help: help})
	}
	return &metrics{
		writeBytes:  c("write_bytes_total", "Bytes written through the data API (acknowledged)."),
		readBytes:   c("read_bytes_total", "Bytes read through the data API."),
		heartbeats:  c("heartbeats_total", "Heartbeats acknowledged by the MDS."),
		checkpoints: c("checkpoints_total", "Copyset checkpoints taken."),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.writeBytes, m.readBytes, m.heartbeats, m.checkpoints}
}
