package grpctransport

import "errors"

// Errors returned by the transport. Test with errors.Is.
var (
	// ErrInvalidConfig is wrapped by Config.Validate and New.
	ErrInvalidConfig = errors.New("grpctransport: invalid config")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("grpctransport: transport closed")
	// ErrUnknownHost is returned by a Resolver that has no address for a
	// host.
	ErrUnknownHost = errors.New("grpctransport: unknown host")
	// ErrUnavailable means a peer could not be connected to in time.
	ErrUnavailable = errors.New("grpctransport: peer unavailable")
	// ErrWrongHost means the peer reached at a host's address is another
	// host (a stale address).
	ErrWrongHost = errors.New("grpctransport: wrong destination host")
	// ErrSnapshotRejected means the receiver's handler refused a snapshot.
	ErrSnapshotRejected = errors.New("grpctransport: snapshot rejected")
	// ErrStreamBroken is returned by the reader handed to
	// Handler.HandleSnapshot when the sender's stream ends before the
	// snapshot is complete.
	ErrStreamBroken = errors.New("grpctransport: snapshot stream broken")
	// ErrInvalidMessage means a peer sent a malformed message.
	ErrInvalidMessage = errors.New("grpctransport: invalid message")
	// ErrNoHandler means a snapshot arrived before SetHandler.
	ErrNoHandler = errors.New("grpctransport: no handler set")
)
