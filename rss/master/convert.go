package master

import (
	"cmp"
	"slices"
	"time"

	"basalt/rss/gossip"
	"basalt/rss/rsspb"
)

// workerRefPB converts r; nil for the zero WorkerRef.
func workerRefPB(r WorkerRef) *rsspb.WorkerRef {
	if r.IsZero() {
		return nil
	}
	return &rsspb.WorkerRef{Id: r.ID, Addr: r.Addr}
}

// locationPB converts l.
func locationPB(l Location) *rsspb.PartitionLocation {
	return &rsspb.PartitionLocation{
		Partition: l.Partition, Epoch: l.Epoch, Primary: workerRefPB(l.Primary), Replica: workerRefPB(l.Replica),
	}
}

// locationsPB converts locs.
func locationsPB(locs []Location) []*rsspb.PartitionLocation {
	out := make([]*rsspb.PartitionLocation, len(locs))
	for i, l := range locs {
		out[i] = locationPB(l)
	}
	return out
}

// shuffleStatePB converts info.
func shuffleStatePB(info ShuffleInfo) *rsspb.ShuffleState {
	st := &rsspb.ShuffleState{
		ShuffleId: info.ID, NumMaps: info.NumMaps, NumPartitions: info.NumPartitions,
		Committed: info.Committed, Locations: locationsPB(info.Locations),
	}
	st.Winners = attemptsPB(info.Winners)
	st.OtherAttempts = attemptsPB(info.Ignored)
	return st
}

// attemptsPB converts attempts.
func attemptsPB(attempts []MapAttempt) []*rsspb.MapWinner {
	var out []*rsspb.MapWinner
	for _, a := range attempts {
		out = append(out, &rsspb.MapWinner{MapIndex: a.MapIndex, Attempt: a.Attempt, Batches: a.Batches})
	}
	return out
}

// statusPB builds a Status response; workers are reported as seen at
// now (they are live members).
func statusPB(workers []gossip.Meta, apps []AppInfo, now time.Time) *rsspb.StatusResponse {
	slices.SortFunc(workers, func(a, b gossip.Meta) int { return cmp.Compare(a.ID, b.ID) })
	resp := &rsspb.StatusResponse{}
	for _, w := range workers {
		resp.Workers = append(resp.Workers, &rsspb.WorkerStatus{
			Worker:        &rsspb.WorkerRef{Id: w.ID, Addr: w.Addr},
			DiskFreeBytes: w.DiskFreeBytes, MemoryUsedBytes: w.MemoryUsedBytes,
			ActivePartitions: w.ActivePartitions, Decommissioning: w.Decommissioning,
			LastSeenUnixMs: now.UnixMilli(),
		})
	}
	for _, a := range apps {
		resp.Applications = append(resp.Applications, &rsspb.ApplicationStatus{
			AppId: a.ID, Shuffles: a.Shuffles, ExpiresUnixMs: a.Expires.UnixMilli(),
		})
	}
	return resp
}
