package grpctransport

import "github.com/prometheus/client_golang/prometheus"

// Reasons a message is dropped, the "reason" label of
// basalt_raft_transport_messages_dropped_total.
const (
	dropQueueFull   = "queue_full"  // the peer's queue was full
	dropUnreachable = "unreachable" // dial or stream failed
	dropTooLarge    = "too_large"   // larger than MaxBatchBytes
	dropClosed      = "closed"      // sent after Close
	dropNoHandler   = "no_handler"  // arrived before SetHandler
	dropInvalid     = "invalid"     // no destination or not encodable
)

// metrics are one Transport's Prometheus collectors. They are registered by
// the caller (cmd/), never here.
type metrics struct {
	sent             prometheus.Counter
	received         prometheus.Counter
	dropped          *prometheus.CounterVec
	batches          prometheus.Counter
	bytes            prometheus.Counter
	snapshotSent     prometheus.Counter
	snapshotReceived prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		sent:             counter("messages_sent_total", "Raft messages written to a peer stream."),
		received:         counter("messages_received_total", "Raft messages received and handed to the handler."),
		dropped:          droppedVec(),
		batches:          counter("batches_sent_total", "Message batches written to peer streams."),
		bytes:            counter("bytes_sent_total", "Encoded bytes of message batches written to peer streams."),
		snapshotSent:     counter("snapshot_bytes_sent_total", "Snapshot body bytes sent."),
		snapshotReceived: counter("snapshot_bytes_received_total", "Snapshot body bytes read by the handler."),
	}
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "raft_transport", Name: name, Help: help,
	})
}

func droppedVec() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "raft_transport", Name: "messages_dropped_total",
		Help: "Raft messages dropped, by reason.",
	}, []string{"reason"})
}

func (m *metrics) drop(reason string, n int) {
	m.dropped.WithLabelValues(reason).Add(float64(n))
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.sent, m.received, m.dropped, m.batches, m.bytes, m.snapshotSent, m.snapshotReceived,
	}
}
