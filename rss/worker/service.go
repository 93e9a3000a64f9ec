package worker

import (
	"context"
	"fmt"

	"basalt/rss/rsspb"
)

// Push implements rsspb.WorkerServer. Every batch must belong to a
// partition whose primary is this worker. For each batch in order: its
// CRC is checked (DataLoss), its memory reserved (ResourceExhausted when
// over the limit), it is forwarded to the request's replica, if any, over
// one Replicate stream per replica address, and appended to its
// partition file. PushResponse.acked counts the batches of the stream
// written here and acknowledged by the replica, in order; appending does
// not wait for earlier acknowledgements. The first batch that fails ends
// the stream with its error after the batches before it are
// acknowledged; the client re-pushes the rest (duplicates of batches
// stored but not acknowledged are the reader's to drop). Pushing to a
// committed shuffle is FailedPrecondition, a full disk ResourceExhausted,
// an unreachable replica Unavailable.
func (w *Worker) Push(stream rsspb.Worker_PushServer) error {
	return toStatus(w.serve(stream, true))
}

// Replicate implements rsspb.WorkerServer: Push from a primary, without
// forwarding (PushRequest.replica is ignored).
func (w *Worker) Replicate(stream rsspb.Worker_ReplicateServer) error {
	return toStatus(w.serve(stream, false))
}

// Commit implements rsspb.WorkerServer. It commits every partition file
// of the call's application and the shuffle on this worker: buffered
// batches are written, each file is cut to its last whole batch, fsynced
// and closed, the directories synced, and the files' indexes and the
// shuffle's committed marker recorded in one synced Pebble batch. From
// its start the shuffle takes no more pushes. It is idempotent and
// returns the number of partition files of the shuffle committed here.
// It runs to completion even if ctx ends.
func (w *Worker) Commit(ctx context.Context, req *rsspb.CommitRequest) (*rsspb.CommitResponse, error) {
	app, _, err := callApp(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetShuffleId() < 0 {
		return nil, toStatus(fmt.Errorf("%w: shuffle %d", ErrInvalidArgument, req.GetShuffleId()))
	}
	n, err := w.commitShuffle(shuffleKey{app, req.GetShuffleId()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &rsspb.CommitResponse{Partitions: int32(n)}, nil
}

// Fetch implements rsspb.WorkerServer. It streams the batches of a
// committed partition epoch in file order, keeping those of maps in
// [start_map, end_map) (end_map 0: no bound) and, when winners are
// given, only the winning attempt of each listed map (maps not listed
// are skipped). Each batch is checked against the index and its CRC;
// a mismatch is DataLoss naming the partition and the offset. A
// partition not committed yet is FailedPrecondition; one this worker
// does not have, NotFound.
func (w *Worker) Fetch(req *rsspb.FetchRequest, stream rsspb.Worker_FetchServer) error {
	app, _, err := callApp(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	k := partKey{shuffleKey{app, req.GetShuffleId()}, req.GetPartition(), req.GetEpoch()}
	if k.shuffle < 0 || k.partition < 0 || k.epoch < 0 {
		return toStatus(fmt.Errorf("%w: fetch of %v", ErrInvalidArgument, k))
	}
	return toStatus(w.fetch(stream.Context(), k, newFetchFilter(req), stream.Send))
}

// DeleteShuffle implements rsspb.WorkerServer. It deletes the files and
// index entries of one shuffle (shuffle_id >= 0) or of every shuffle of
// the application (shuffle_id < 0). The application is app_id, or the
// call's when app_id is empty. Pending pushes to the deleted partitions
// fail with NotFound, and so do later ones (until the worker restarts).
func (w *Worker) DeleteShuffle(ctx context.Context, req *rsspb.DeleteShuffleRequest) (*rsspb.DeleteShuffleResponse, error) {
	app := req.GetAppId()
	var err error
	if app == "" {
		app, _, err = callApp(ctx)
	}
	if err == nil {
		err = checkApp(app)
	}
	if err == nil {
		err = w.deleteShuffles(app, max(req.GetShuffleId(), -1))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return &rsspb.DeleteShuffleResponse{}, nil
}
