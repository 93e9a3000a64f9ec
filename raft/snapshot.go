package raft

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	etcdraft "go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"basalt/internal/vfsutil"
)

// servedSnapshot is the state machine snapshot a leader streams to
// followers that fell behind the compacted log. It is closed once it has
// been replaced and no transfer still reads it.
type servedSnapshot struct {
	index uint64
	src   SnapshotSource
	mu    struct {
		sync.Mutex
		refs    int
		retired bool
	}
}

func (s *servedSnapshot) acquire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.refs++
}

func (s *servedSnapshot) release() { s.settle(func() { s.mu.refs-- }) }

func (s *servedSnapshot) retire() { s.settle(func() { s.mu.retired = true }) }

func (s *servedSnapshot) settle(change func()) {
	s.mu.Lock()
	change()
	closeIt := s.mu.retired && s.mu.refs == 0
	s.mu.Unlock()
	if closeIt {
		_ = s.src.Close()
	}
}

// stagedPath names the file a received snapshot is staged in until the
// state machine has restored it.
func stagedPath(fs vfs.FS, dir string, group, index, term uint64) string {
	return fs.PathJoin(dir, fmt.Sprintf("%016x-%016x-%016x.snap", group, index, term))
}

func stagedGroupPrefix(group uint64) string { return fmt.Sprintf("%016x-", group) }

// stage writes a received snapshot to its staging file durably.
func stage(fs vfs.FS, dir string, group uint64, meta *raftpb.SnapshotMetadata, body io.Reader) (int64, error) {
	path := stagedPath(fs, dir, group, meta.GetIndex(), meta.GetTerm())
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", tmp, err)
	}
	n, err := io.Copy(f, body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err == nil {
		err = vfsutil.SyncDir(fs, dir)
	}
	if err != nil {
		_ = fs.Remove(tmp)
		return n, fmt.Errorf("staging snapshot of group %d at index %d: %w", group, meta.GetIndex(), err)
	}
	return n, nil
}

// removeStaged deletes a group's staged snapshots (and partial ones) at or
// below index; index math.MaxUint64 removes all of them.
func removeStaged(fs vfs.FS, dir string, group, index uint64) {
	names, err := fs.List(dir)
	if err != nil {
		return
	}
	for _, n := range names {
		var g, i, t uint64
		if !strings.HasPrefix(n, stagedGroupPrefix(group)) {
			continue
		}
		_, perr := fmt.Sscanf(n, "%016x-%016x-%016x", &g, &i, &t)
		if perr != nil || i <= index || strings.HasSuffix(n, ".tmp") {
			_ = fs.Remove(fs.PathJoin(dir, n))
		}
	}
}

// HandleSnapshot implements Handler: it stages the snapshot durably, then
// hands the MsgSnap to raft, which restores it through the state machine
// once it accepts it.
func (h *Host) HandleSnapshot(ctx context.Context, env Envelope, body io.Reader) error {
	snap := env.Message.GetSnapshot()
	if env.Message.GetType() != raftpb.MsgSnap || etcdraft.IsEmptySnap(snap) {
		return fmt.Errorf("%w: snapshot stream without a MsgSnap header", ErrInvalidMessage)
	}
	if !h.hasGroup(env.Group) {
		return fmt.Errorf("receiving snapshot: group %d: %w", env.Group, ErrGroupNotFound)
	}
	n, err := stage(h.cfg.FS, h.snapDir, env.Group, snap.GetMetadata(), body)
	if err != nil {
		return err
	}
	h.metrics.snapBytesRecv.Add(float64(n))
	h.metrics.snapshotsRecv.Inc()
	h.HandleMessages([]Envelope{env})
	return nil
}

// sendSnapshot streams the served snapshot of g to the MsgSnap's target
// and reports the outcome to raft. It runs on its own goroutine.
func (h *Host) sendSnapshot(g *group, m *raftpb.Message, s *servedSnapshot) {
	defer h.bg.Done()
	defer s.release()
	status := etcdraft.SnapshotFailure
	defer func() { h.do(func() { h.reportSnapshot(g, m.GetTo(), status) }) }()
	select {
	case h.snapSem <- struct{}{}:
		defer func() { <-h.snapSem }()
	case <-h.stop:
		return
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.SnapshotTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	cw := &countingWriter{w: pw}
	go func() { pw.CloseWithError(s.src.WriteTo(ctx, cw)) }()
	err := h.cfg.Transport.SendSnapshot(ctx, Envelope{Group: g.id, Message: m}, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	h.metrics.snapBytesSent.Add(float64(cw.n.Load()))
	if err != nil {
		h.log.Warn("sending snapshot failed", "group", g.id, "peer", m.GetTo(), "err", err)
		return
	}
	h.metrics.snapshotsSent.Inc()
	status = etcdraft.SnapshotFinish
}

func (h *Host) reportSnapshot(g *group, to uint64, status etcdraft.SnapshotStatus) {
	if h.groups[g.id] == g {
		g.rn.ReportSnapshot(to, status)
		h.markDirty(g)
	}
}

// snapshotCreated implements applyEvents: the state machine produced a
// snapshot at index; it becomes what raft sends to lagging followers.
func (h *Host) snapshotCreated(group, index uint64, src SnapshotSource) {
	h.do(func() {
		g := h.groups[group]
		if g == nil {
			_ = src.Close()
			return
		}
		g.snapBusy = false
		h.installServed(g, index, src)
	})
}

func (h *Host) installServed(g *group, index uint64, src SnapshotSource) {
	term, terr := g.store.Term(index)
	cs, ok := g.confAt(index)
	if terr != nil || !ok || index == 0 {
		h.log.Debug("discarding stale snapshot", "group", g.id, "index", index)
		_ = src.Close()
		return
	}
	if g.served != nil {
		g.served.retire()
	}
	g.served = &servedSnapshot{index: index, src: src}
	g.store.snap = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		ConfState: cs, Index: new(index), Term: new(term),
	}}
	g.store.wantSnap = false
}

// restored implements applyEvents: a staged snapshot is now the state
// machine's durable state, so its file and pending record can go.
func (h *Host) restored(group, index uint64) {
	h.do(func() {
		g := h.groups[group]
		if g == nil {
			return
		}
		pending := raftpb.EnsureSnapshotMetadata(nil)
		found, err := getProto(h.db, groupKey(group, suffixPending), pending)
		if err != nil || !found || pending.GetIndex() != index {
			return
		}
		if err := h.db.Delete(groupKey(group, suffixPending), pebble.Sync); err != nil {
			h.log.Error("clearing pending snapshot", "group", group, "err", err)
			return
		}
		removeStaged(h.cfg.FS, h.snapDir, group, index)
	})
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
