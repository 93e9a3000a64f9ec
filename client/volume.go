package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"basalt/mds/mdspb"
)

// Volume is an open Basalt volume. Every method is safe for concurrent use.
// Create one with Open and release it with Close.
type Volume struct {
	opts    Options
	log     *slog.Logger
	name    string
	geo     geometry
	session uint64 // the writer session; 0 for a reader
	mds     *mdsPool
	conns   *connPool
	segs    *segmentCache
	sets    *copysetCache
	calls   tracker
	metrics *metrics

	leaseLost atomic.Bool
	stopRenew context.CancelFunc
	renewDone chan struct{} // closed when the renewal goroutine has returned
}

// Open opens volume through the MDS: as its one writer if opts.Writer (the
// MDS grants a lease that the Volume renews in the background until Close),
// otherwise as a reader. It fails with ErrVolumeNotFound if the volume does
// not exist, with ErrWriterExists if another client holds the writer lease
// and opts.Force is false, with ErrInvalidArgument for bad Options, and with
// ErrUnavailable if no MDS answered within opts.RetryDeadline. ctx bounds
// Open only, not the Volume's life.
func Open(ctx context.Context, opts Options, volume string) (*Volume, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if volume == "" {
		return nil, fmt.Errorf("%w: empty volume name", ErrInvalidArgument)
	}
	dial := dialOptions(opts.DialOptions)
	mds, err := newMDSPool(opts.MDSAddrs, dial)
	if err != nil {
		return nil, err
	}
	v := &Volume{
		opts: opts, name: volume, mds: mds, conns: newConnPool(dial),
		log:  opts.Logger.With("volume", volume),
		segs: newSegmentCache(opts.NegativeCacheTTL), sets: newCopysetCache(),
		metrics: newMetrics(volume), renewDone: make(chan struct{}),
	}
	if err := v.open(ctx); err != nil {
		_ = v.closeConns()
		return nil, err
	}
	return v, nil
}

// open calls OpenVolume and starts the lease renewal of a writer.
func (v *Volume) open(ctx context.Context) error {
	req := &mdspb.OpenVolumeRequest{Volume: v.name, Writer: v.opts.Writer, Force: v.opts.Force, Client: v.opts.ClientName}
	var resp *mdspb.OpenVolumeResponse
	s := newRetryState(time.Now().Add(v.opts.RetryDeadline))
	err := v.retryMDS(ctx, s, func(ctx context.Context, c mdspb.MDSClient) (err error) {
		resp, err = c.OpenVolume(ctx, req)
		return err
	}, meaning{code: codes.FailedPrecondition, err: ErrWriterExists})
	if err != nil {
		return fmt.Errorf("opening volume %q: %w", v.name, err)
	}
	v.session = resp.GetSession()
	if v.geo, err = newGeometry(resp.GetVolume().GetSize(), resp.GetVolume().GetSegmentSize(),
		resp.GetVolume().GetChunkSize()); err != nil {
		return errors.Join(err, v.release())
	}
	v.startRenewal(ctx, resp.GetLeaseMs())
	return nil
}

// Name returns the volume's name.
func (v *Volume) Name() string { return v.name }

// Size returns the volume's size in bytes, as it was at Open.
func (v *Volume) Size() int64 { return v.geo.size }

// Collectors returns the Volume's Prometheus collectors (calls, bytes,
// errors and latency by op; retries; redirects), labelled with the volume
// name, for the application to register.
func (v *Volume) Collectors() []prometheus.Collector { return v.metrics.collectors() }

// Close waits for the calls in flight to return, stops the lease renewal,
// releases a writer's lease at the MDS (CloseVolume, unless the lease was
// lost) and closes every connection. Calls made after Close has begun fail
// with ErrClosed, and so does a second Close.
func (v *Volume) Close() error {
	pending, first := v.calls.close()
	if !first {
		return ErrClosed
	}
	_ = waitAll(context.Background(), pending)
	v.stopRenew()
	<-v.renewDone
	err := v.release()
	return errors.Join(err, v.closeConns())
}

// release ends a writer's session at the MDS.
func (v *Volume) release() error {
	if v.session == 0 || v.leaseLost.Load() {
		return nil
	}
	err := v.mds.call(context.Background(), v.opts.RPCTimeout, func(ctx context.Context, c mdspb.MDSClient) error {
		_, err := c.CloseVolume(ctx, &mdspb.CloseVolumeRequest{Volume: v.name, Session: v.session})
		return err
	}, sessionLost())
	if err != nil {
		return fmt.Errorf("closing volume %q at the MDS: %w", v.name, err)
	}
	return nil
}

func (v *Volume) closeConns() error {
	return errors.Join(v.conns.close(), v.mds.close())
}
