package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"basalt/rss/masterconn"
	"basalt/rss/rsspb"
)

// Codec is the compression of batch data.
type Codec byte

// Codecs.
const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
	CodecLZ4  Codec = 2
)

// Config configures an App.
type Config struct {
	// MasterAddr is the gRPC address of the master, or a comma-separated
	// list of the addresses of replicated masters: calls go to the one
	// that leads and fail over to another within RetryDeadline (see
	// rss/masterconn). Required.
	MasterAddr string
	// AppID is the application's id. Required.
	AppID string
	// Token is the application's secret: empty to register a new
	// application (Register), the registering process's token to join it
	// (Connect).
	Token string
	// BatchBytes is how many record bytes a partition buffers before its
	// batch is pushed. Default 256 KiB.
	BatchBytes int
	// MaxInFlightBytes bounds the bytes pushed but not yet acknowledged
	// per Writer; Write waits beyond it. Default 64 MiB.
	MaxInFlightBytes int
	// Codec compresses batches: CodecLZ4 (fast, the Spark plugin's
	// default), CodecZstd (smaller) or CodecNone. Default CodecNone.
	Codec Codec
	// RetryDeadline bounds how long a push or fetch keeps retrying (with
	// jittered backoff, moving to new locations), and a master call keeps
	// failing over between masters, before failing. Default 60 s.
	RetryDeadline time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// DialOptions are added to every gRPC connection.
	DialOptions []grpc.DialOption
}

func (c Config) withDefaults() Config {
	if c.BatchBytes <= 0 {
		c.BatchBytes = 256 << 10
	}
	if c.MaxInFlightBytes <= 0 {
		c.MaxInFlightBytes = 64 << 20
	}
	if c.RetryDeadline <= 0 {
		c.RetryDeadline = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Errors.
var (
	ErrConfig       = errors.New("rss/client: bad configuration")
	ErrNotCommitted = errors.New("rss/client: shuffle not committed")
	ErrDataLost     = errors.New("rss/client: shuffle data lost")
)

// App is a registered application: the master connection, its token and a
// pool of worker connections.
type App struct {
	cfg    Config
	creds  *appCreds
	master rsspb.MasterClient
	conn   *masterconn.Conn
	mu     struct {
		sync.Mutex
		workers map[string]*grpc.ClientConn
	}
	stopHeartbeat context.CancelFunc
	heartbeatDone chan struct{}
}

// appCreds puts the app id and token in every call's metadata.
type appCreds struct {
	app string
	mu  sync.Mutex
	tok string
}

func (c *appCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return map[string]string{"basalt-rss-app": c.app, "basalt-rss-token": c.tok}, nil
}

func (c *appCreds) RequireTransportSecurity() bool { return false }

func (c *appCreds) setToken(t string) {
	c.mu.Lock()
	c.tok = t
	c.mu.Unlock()
}

// Register registers a new application with the master (cfg.Token empty)
// and keeps its lease alive until Close.
func Register(ctx context.Context, cfg Config) (*App, error) {
	a, err := dialApp(cfg)
	if err != nil {
		return nil, err
	}
	// The client draws the token and presents it, so a registration the
	// connection retries on another master (a failover) renews what a
	// first attempt created instead of failing with AlreadyExists.
	token, err := newToken()
	if err != nil {
		_ = a.conn.Close()
		return nil, err
	}
	a.creds.setToken(token)
	resp, err := a.master.RegisterApplication(ctx, &rsspb.RegisterApplicationRequest{AppId: cfg.AppID})
	if err != nil {
		_ = a.conn.Close()
		return nil, fmt.Errorf("registering application %q: %w", cfg.AppID, err)
	}
	a.creds.setToken(resp.GetToken())
	a.cfg.Token = resp.GetToken()
	a.startHeartbeat(time.Duration(resp.GetLeaseMs()) * time.Millisecond / 3)
	return a, nil
}

// Connect joins an application registered elsewhere (an executor using
// the driver's token). It does not renew the lease.
func Connect(cfg Config) (*App, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("%w: Connect needs the application's token", ErrConfig)
	}
	return dialApp(cfg)
}

func dialApp(cfg Config) (*App, error) {
	if cfg.MasterAddr == "" || cfg.AppID == "" {
		return nil, fmt.Errorf("%w: MasterAddr and AppID are required", ErrConfig)
	}
	cfg = cfg.withDefaults()
	a := &App{cfg: cfg, creds: &appCreds{app: cfg.AppID, tok: cfg.Token}}
	conn, err := masterconn.Dial(masterconn.Split(cfg.MasterAddr), cfg.RetryDeadline, a.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%w: master %q: %w", ErrConfig, cfg.MasterAddr, err)
	}
	a.conn, a.master = conn, rsspb.NewMasterClient(conn)
	a.mu.workers = map[string]*grpc.ClientConn{}
	return a, nil
}

func (a *App) dialOptions() []grpc.DialOption {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(a.creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	return append(opts, a.cfg.DialOptions...)
}

// newToken returns 16 random bytes as 32 hex digits (master.MinTokenLen).
func newToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("drawing an application token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Token returns the application's token (for executors to Connect).
func (a *App) Token() string { return a.cfg.Token }

// startHeartbeat renews the lease every interval until Close.
func (a *App) startHeartbeat(every time.Duration) {
	every = max(every, 100*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	a.stopHeartbeat, a.heartbeatDone = cancel, make(chan struct{})
	go func() {
		defer close(a.heartbeatDone)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := a.master.ApplicationHeartbeat(ctx, &rsspb.ApplicationHeartbeatRequest{}); err != nil && ctx.Err() == nil {
					a.cfg.Logger.Warn("rss: application heartbeat failed", "app", a.cfg.AppID, "err", err)
				}
			}
		}
	}()
}

// worker returns a client for the worker at addr (one connection each).
func (a *App) worker(addr string) (rsspb.WorkerClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.mu.workers[addr]; c != nil {
		return rsspb.NewWorkerClient(c), nil
	}
	c, err := grpc.NewClient(addr, a.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("dialing worker %s: %w", addr, err)
	}
	a.mu.workers[addr] = c
	return rsspb.NewWorkerClient(c), nil
}

// RegisterShuffle registers a shuffle of numMaps map tasks and
// numPartitions reduce partitions (idempotent).
func (a *App) RegisterShuffle(ctx context.Context, shuffle, numMaps, numPartitions int) error {
	_, err := a.master.RegisterShuffle(ctx, &rsspb.RegisterShuffleRequest{
		ShuffleId: int32(shuffle), NumMaps: int32(numMaps), NumPartitions: int32(numPartitions)})
	if err != nil {
		return fmt.Errorf("registering shuffle %d: %w", shuffle, err)
	}
	return nil
}

// CommitShuffle makes the shuffle's data durable and readable; call it
// when every map task has ended.
func (a *App) CommitShuffle(ctx context.Context, shuffle int) error {
	if _, err := a.master.CommitShuffle(ctx, &rsspb.CommitShuffleRequest{ShuffleId: int32(shuffle)}); err != nil {
		return fmt.Errorf("committing shuffle %d: %w", shuffle, err)
	}
	return nil
}

// UnregisterShuffle deletes the shuffle's data.
func (a *App) UnregisterShuffle(ctx context.Context, shuffle int) error {
	if _, err := a.master.UnregisterShuffle(ctx, &rsspb.UnregisterShuffleRequest{ShuffleId: int32(shuffle)}); err != nil {
		return fmt.Errorf("unregistering shuffle %d: %w", shuffle, err)
	}
	return nil
}

// Unregister ends the application: its data is deleted.
func (a *App) Unregister(ctx context.Context) error {
	if _, err := a.master.UnregisterApplication(ctx, &rsspb.UnregisterApplicationRequest{}); err != nil {
		return fmt.Errorf("unregistering application %q: %w", a.cfg.AppID, err)
	}
	return nil
}

// Close stops the heartbeat and closes the connections (it does not
// unregister).
func (a *App) Close() error {
	if a.stopHeartbeat != nil {
		a.stopHeartbeat()
		<-a.heartbeatDone
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	errs := []error{a.conn.Close()}
	for _, c := range a.mu.workers {
		errs = append(errs, c.Close())
	}
	a.mu.workers = nil
	return errors.Join(errs...)
}
