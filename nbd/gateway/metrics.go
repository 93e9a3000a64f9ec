package gateway

import (
	"context"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"basalt/nbd"
)

// metrics are the gateway's Prometheus collectors.
type metrics struct {
	connsActive prometheus.Gauge
	connsTotal  prometheus.Counter
	volumesOpen prometheus.GaugeFunc
	requests    *prometheus.CounterVec // by op
	errors      *prometheus.CounterVec // by op
	bytes       *prometheus.CounterVec // by op (read, write)
}

func newMetrics(open func() float64) *metrics {
	return &metrics{
		connsActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "basalt_nbd_connections_active", Help: "NBD connections open now."}),
		connsTotal:  prometheus.NewCounter(prometheus.CounterOpts{Name: "basalt_nbd_connections_total", Help: "NBD connections accepted."}),
		volumesOpen: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "basalt_nbd_volumes_open", Help: "Volumes open (writer lease held) because a client is connected."}, open),
		requests:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "basalt_nbd_requests_total", Help: "Backend operations by op (read, write, discard, flush)."}, []string{"op"}),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "basalt_nbd_request_errors_total", Help: "Backend operations that failed, by op."}, []string{"op"}),
		bytes:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "basalt_nbd_bytes_total", Help: "Bytes read and written by NBD clients, by op."}, []string{"op"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.connsActive, m.connsTotal, m.volumesOpen, m.requests, m.errors, m.bytes}
}

// done counts one operation of n bytes that ended with err.
func (m *metrics) done(op string, n int, err error) {
	m.requests.WithLabelValues(op).Inc()
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
	}
	if n > 0 {
		m.bytes.WithLabelValues(op).Add(float64(n))
	}
}

// meteredExports counts the operations on the backends Exports returns.
type meteredExports struct {
	*Exports
	m *metrics
}

var _ nbd.Releaser = meteredExports{}

// Open implements nbd.Exports.
func (e meteredExports) Open(ctx context.Context, name string) (nbd.Backend, error) {
	b, err := e.Exports.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return meteredBackend{Backend: b.(Backend), m: e.m}, nil
}

// meteredBackend is a Backend that counts its operations.
type meteredBackend struct {
	Backend
	m *metrics
}

func (b meteredBackend) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := b.Backend.ReadAt(ctx, p, off)
	b.m.done("read", n, err)
	return n, err
}

func (b meteredBackend) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := b.Backend.WriteAt(ctx, p, off)
	b.m.done("write", n, err)
	return n, err
}

func (b meteredBackend) Discard(ctx context.Context, off, length int64) error {
	err := b.Backend.Discard(ctx, off, length)
	b.m.done("discard", 0, err)
	return err
}

func (b meteredBackend) Flush(ctx context.Context) error {
	err := b.Backend.Flush(ctx)
	b.m.done("flush", 0, err)
	return err
}

// countingListener counts the connections it accepts and those still open.
type countingListener struct {
	net.Listener
	m *metrics
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.m.connsTotal.Inc()
	l.m.connsActive.Inc()
	return &countedConn{Conn: c, m: l.m}, nil
}

// countedConn decrements the active-connection gauge once when closed.
type countedConn struct {
	net.Conn
	m    *metrics
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.m.connsActive.Dec)
	return c.Conn.Close()
}
