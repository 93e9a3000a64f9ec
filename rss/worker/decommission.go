package worker

import (
	"context"
	"slices"

	"basalt/rss/rsspb"
)

// DecommissionState is what a worker still holds while it decommissions.
type DecommissionState struct {
	// Decommissioning: StartDecommission was called.
	Decommissioning bool
	// PushesInFlight is the number of Push and Replicate streams open.
	PushesInFlight int
	// Applications lists, sorted, the applications with partition files
	// (open or committed) on this worker.
	Applications []string
	// PartitionFiles is the number of those partition files.
	PartitionFiles int
}

// Empty reports whether the worker holds nothing more: no stream open
// and no partition file.
func (s DecommissionState) Empty() bool {
	return s.PushesInFlight == 0 && s.PartitionFiles == 0
}

// StartDecommission puts the worker in decommission and returns its
// state; calling it again changes nothing. From then on new Push and
// Replicate streams are refused with ErrDecommissioning (Unavailable),
// so writers move the partition elsewhere (the master's Revive skips a
// decommissioning worker), while the streams already open run to their
// end. Commit, Fetch and DeleteShuffle keep working: committed data is
// served until the master deletes it when its application ends. The
// decommission lasts until the worker closes (a restarted worker is not
// decommissioning). Safe for concurrent use.
func (w *Worker) StartDecommission() DecommissionState {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.mu.decommissioning {
		w.mu.decommissioning = true
		w.notifyLocked()
		w.log.Info("decommissioning: new pushes are refused")
	}
	return w.decommissionStateLocked()
}

// Decommissioning reports whether StartDecommission was called.
func (w *Worker) Decommissioning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.decommissioning
}

// DecommissionState returns the worker's current state (Decommissioning
// false when StartDecommission was not called).
func (w *Worker) DecommissionState() DecommissionState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.decommissionStateLocked()
}

// decommissionStateLocked counts the open streams, and the partition
// files and their applications.
// REQUIRES: w.mu held.
func (w *Worker) decommissionStateLocked() DecommissionState {
	s := DecommissionState{Decommissioning: w.mu.decommissioning, PushesInFlight: w.mu.streams}
	apps := map[string]bool{}
	for sk, st := range w.mu.shuffles {
		if n := len(st.open) + len(st.done); n > 0 {
			s.PartitionFiles += n
			apps[sk.app] = true
		}
	}
	for app := range apps {
		s.Applications = append(s.Applications, app)
	}
	slices.Sort(s.Applications)
	return s
}

// WaitDecommissioned returns nil once the worker is decommissioning and
// empty (DecommissionState.Empty: every application's data deleted and
// every stream ended), or ctx's error when ctx ends first. Safe for
// concurrent use.
func (w *Worker) WaitDecommissioned(ctx context.Context) error {
	for {
		w.mu.Lock()
		done := w.mu.decommissioning && w.decommissionStateLocked().Empty()
		changed := w.mu.changed
		w.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Decommission implements rsspb.WorkerServer: StartDecommission, for an
// operator (the call needs no application metadata). It returns the
// worker's state.
func (w *Worker) Decommission(context.Context, *rsspb.DecommissionRequest) (*rsspb.DecommissionResponse, error) {
	if err := w.alive(); err != nil {
		return nil, toStatus(err)
	}
	s := w.StartDecommission()
	return &rsspb.DecommissionResponse{
		Decommissioning: s.Decommissioning, PushesInFlight: int32(s.PushesInFlight),
		Applications: s.Applications, PartitionFiles: int32(s.PartitionFiles),
	}, nil
}

// alive returns ErrClosed once the worker is closed.
func (w *Worker) alive() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.closed {
		return ErrClosed
	}
	return nil
}
