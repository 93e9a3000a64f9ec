package client

import (
	"context"
	"errors"
	"time"

	"basalt/mds/mdspb"
)

// startRenewal starts the goroutine that renews a writer's session every
// third of the lease. Readers (no session) get none.
func (v *Volume) startRenewal(ctx context.Context, leaseMS int64) {
	ctx, v.stopRenew = context.WithCancel(context.WithoutCancel(ctx))
	if v.session == 0 || leaseMS <= 0 {
		close(v.renewDone)
		return
	}
	go v.renewLoop(ctx, renewInterval(leaseMS))
}

// renewInterval is a third of the lease, at least a millisecond.
func renewInterval(leaseMS int64) time.Duration {
	return max(time.Duration(leaseMS)*time.Millisecond/3, time.Millisecond)
}

// renewLoop renews the session until ctx ends or the MDS refuses the
// session (then the Volume loses its lease: writes fail with ErrLeaseLost).
// Other failures are logged and retried at the next interval, while the
// lease may still be valid.
func (v *Volume) renewLoop(ctx context.Context, every time.Duration) {
	defer close(v.renewDone)
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leaseMS, err := v.renew(ctx, every)
		switch {
		case errors.Is(err, ErrLeaseLost):
			v.loseLease(err)
			return
		case err != nil && ctx.Err() == nil:
			v.log.Warn("renewing the writer session failed; retrying", "session", v.session, "err", err)
		case leaseMS > 0:
			every = renewInterval(leaseMS)
		}
		t.Reset(every)
	}
}

// renew calls RenewSession once (trying each MDS address) and returns the
// new lease.
func (v *Volume) renew(ctx context.Context, every time.Duration) (int64, error) {
	var resp *mdspb.RenewSessionResponse
	err := v.mds.call(ctx, min(v.opts.RPCTimeout, every), func(ctx context.Context, c mdspb.MDSClient) (err error) {
		resp, err = c.RenewSession(ctx, &mdspb.RenewSessionRequest{Volume: v.name, Session: v.session})
		return err
	}, sessionLost())
	return resp.GetLeaseMs(), err
}

// loseLease makes the Volume read-only for good after the MDS refused its
// session.
func (v *Volume) loseLease(cause error) {
	if v.leaseLost.CompareAndSwap(false, true) {
		v.log.Warn("writer lease lost; writes now fail", "session", v.session, "err", cause)
	}
}
