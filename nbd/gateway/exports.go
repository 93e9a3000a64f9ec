package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"basalt/client"
	"basalt/mds/mdspb"
	"basalt/nbd"
)

// Config configures Exports.
type Config struct {
	// Client is the template every volume is opened with; Writer is
	// forced on (an NBD client may write). MDSAddrs is required.
	Client client.Options
	// Lister lists the volumes NBD_OPT_LIST reports. Nil: the MDS's
	// ListVolumes over the addresses in Client.MDSAddrs.
	Lister Lister
	// Logger receives open/close events. Nil means Client.Logger.
	Logger *slog.Logger
}

// Lister returns the names of the volumes.
type Lister interface {
	ListVolumes(ctx context.Context) ([]string, error)
}

// Exports is an nbd.Exports over Basalt volumes: the export name is the
// volume name. A volume is opened as its writer (taking the writer lease)
// when the first connection selects it and closed (releasing the lease)
// when the last one ends, so the lease is held exactly while a client is
// connected; every connection to one volume shares one client.Volume, which
// is what makes NBD_FLAG_CAN_MULTI_CONN true. Safe for concurrent use.
type Exports struct {
	cfg    Config
	lister Lister
	mu     struct {
		sync.Mutex
		vols map[string]*export
	}
}

var (
	_ nbd.Exports  = (*Exports)(nil)
	_ nbd.Releaser = (*Exports)(nil)
)

// export is one volume and the connections using it.
type export struct {
	ready  chan struct{} // closed when v or err is set
	v      *client.Volume
	err    error
	refs   int           // guarded by Exports.mu
	closed chan struct{} // closed when v.Close returned after the last release
}

// ErrNoMDS is returned by New when Config.Client has no MDS address.
var ErrNoMDS = errors.New("gateway: no MDS address")

// New returns Exports for cfg.
func New(cfg Config) (*Exports, error) {
	if len(cfg.Client.MDSAddrs) == 0 {
		return nil, ErrNoMDS
	}
	cfg.Client.Writer = true
	if cfg.Logger == nil {
		cfg.Logger = cfg.Client.Logger
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Exports{cfg: cfg, lister: cfg.Lister}
	if e.lister == nil {
		e.lister = mdsLister{addrs: cfg.Client.MDSAddrs}
	}
	e.mu.vols = map[string]*export{}
	return e, nil
}

// Open implements nbd.Exports: it opens volume name as its writer, or
// shares the Volume other connections already opened. A volume that does
// not exist is nbd.ErrUnknownExport; a volume another client writes fails
// with client.ErrWriterExists.
func (e *Exports) Open(ctx context.Context, name string) (nbd.Backend, error) {
	for {
		x, opener, wait := e.acquire(name)
		if wait != nil {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if opener {
			x.v, x.err = e.open(ctx, name)
			close(x.ready)
		}
		select {
		case <-x.ready:
		case <-ctx.Done():
			e.Release(name, nil)
			return nil, ctx.Err()
		}
		if x.err != nil {
			e.Release(name, nil)
			return nil, x.err
		}
		return Backend{x.v}, nil
	}
}

// acquire takes a reference on name's export, creating it when absent
// (opener: the caller opens it). When the export is closing, it returns
// the channel to wait on before trying again.
func (e *Exports) acquire(name string) (x *export, opener bool, wait <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x = e.mu.vols[name]
	if x != nil && x.refs == 0 {
		return nil, false, x.closed
	}
	if x == nil {
		x = &export{ready: make(chan struct{}), closed: make(chan struct{})}
		e.mu.vols[name] = x
		opener = true
	}
	x.refs++
	return x, opener, nil
}

// open opens volume name as its writer.
func (e *Exports) open(ctx context.Context, name string) (*client.Volume, error) {
	v, err := client.Open(ctx, e.cfg.Client, name)
	if errors.Is(err, client.ErrVolumeNotFound) {
		return nil, fmt.Errorf("opening volume %q: %w (%w)", name, nbd.ErrUnknownExport, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening volume %q: %w", name, err)
	}
	e.cfg.Logger.Info("gateway: volume opened", "volume", name)
	return v, nil
}

// Release implements nbd.Releaser: the last connection of a volume closes
// it, which releases the writer lease.
func (e *Exports) Release(name string, _ nbd.Backend) {
	e.mu.Lock()
	x := e.mu.vols[name]
	x.refs--
	last := x.refs == 0
	e.mu.Unlock()
	if !last {
		return
	}
	<-x.ready // the opener holds a reference until it is set
	if x.v != nil {
		if err := x.v.Close(); err != nil {
			e.cfg.Logger.Warn("gateway: closing volume", "volume", name, "err", err)
		} else {
			e.cfg.Logger.Info("gateway: volume closed", "volume", name)
		}
	}
	e.mu.Lock()
	delete(e.mu.vols, name)
	e.mu.Unlock()
	close(x.closed)
}

// Opened returns the names of the volumes open now (held by at least one
// connection).
func (e *Exports) Opened() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var names []string
	for name, x := range e.mu.vols {
		if x.refs > 0 {
			names = append(names, name)
		}
	}
	return names
}

// List implements nbd.Exports: every volume.
func (e *Exports) List(ctx context.Context) ([]string, error) {
	return e.lister.ListVolumes(ctx)
}

// Backend is a client.Volume served over NBD with block status:
// never-written segments are reported as holes, so nbdcopy and qemu-img
// copy a volume sparsely.
type Backend struct{ *client.Volume }

var _ nbd.Allocator = Backend{}

// Allocated implements nbd.Allocator.
func (b Backend) Allocated(ctx context.Context, off, length int64) ([]nbd.Extent, error) {
	exts, err := b.Extents(ctx, off, length)
	if err != nil {
		return nil, err
	}
	out := make([]nbd.Extent, len(exts))
	for i, e := range exts {
		out[i] = nbd.Extent{Length: e.Length, Hole: !e.Allocated}
	}
	return out, nil
}

// mdsLister lists volumes with the MDS's ListVolumes.
type mdsLister struct{ addrs []string }

// ListVolumes implements Lister.
func (l mdsLister) ListVolumes(ctx context.Context) ([]string, error) {
	return ListVolumes(ctx, l.addrs)
}

// ListVolumes returns the names of every volume, asking the MDS addresses
// in order until one answers.
func ListVolumes(ctx context.Context, addrs []string) ([]string, error) {
	var errs []error
	for _, addr := range addrs {
		names, err := listFrom(ctx, addr)
		if err == nil {
			return names, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("listing volumes: %w", errors.Join(errs...))
}

// listFrom asks one MDS.
func listFrom(ctx context.Context, addr string) ([]string, error) {
	conn, err := dial(addr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	resp, err := mdspb.NewMDSClient(conn).ListVolumes(ctx, &mdspb.ListVolumesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing volumes at %s: %w", addr, err)
	}
	names := make([]string, 0, len(resp.GetVolumes()))
	for _, v := range resp.GetVolumes() {
		names = append(names, v.GetName())
	}
	return names, nil
}
