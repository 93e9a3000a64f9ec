package master

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// maxAppIDLen bounds an application id, in bytes.
const maxAppIDLen = 256

// MinTokenLen is the shortest token a client may choose for its new
// application (RegisterApp.Presented): 32 bytes, as long as the master's
// own (16 random bytes in hex).
const MinTokenLen = 32

// RegisterApp registers an application or renews a registered one.
type RegisterApp struct {
	// App is the application id: 1 to 256 bytes.
	App string
	// NewToken is the token a new application gets (the caller draws it
	// at random).
	NewToken string
	// Presented is the token the caller presented; it must be the
	// application's token to renew an existing registration. A new
	// application presenting a token (at least MinTokenLen bytes) gets
	// that token instead of NewToken, so a registration retried after a
	// lost reply (a master failover) renews what the first attempt
	// created instead of failing with ErrAppExists.
	Presented string
	// Now is when the command was issued; the lease runs from it.
	Now time.Time
	// Lease is how long the registration lasts without a heartbeat.
	Lease time.Duration
}

// AppLease is an application's token and lease expiry.
type AppLease struct {
	Token   string
	Expires time.Time
}

// RegisterApp applies c: a new application gets c.Presented or else
// c.NewToken; an existing
// one presenting its token has its lease renewed and keeps its token;
// without its token it fails with ErrAppExists.
func (s *State) RegisterApp(c RegisterApp) (AppLease, error) {
	if c.App == "" || len(c.App) > maxAppIDLen || c.NewToken == "" || c.Lease <= 0 {
		return AppLease{}, fmt.Errorf("%w: app id must be 1 to %d bytes, with a token and a positive lease", ErrInvalidArgument, maxAppIDLen)
	}
	if a, ok := s.apps[c.App]; ok {
		if c.Presented != a.token {
			return AppLease{}, fmt.Errorf("%w: %q (present its token to renew it)", ErrAppExists, c.App)
		}
		a.expires = c.Now.Add(c.Lease)
		return AppLease{Token: a.token, Expires: a.expires}, nil
	}
	token := c.NewToken
	if c.Presented != "" {
		if len(c.Presented) < MinTokenLen {
			return AppLease{}, fmt.Errorf("%w: a presented token must be at least %d bytes", ErrInvalidArgument, MinTokenLen)
		}
		token = c.Presented
	}
	a := &app{id: c.App, token: token, expires: c.Now.Add(c.Lease), shuffles: make(map[int32]*shuffle)}
	s.apps[c.App] = a
	return AppLease{Token: a.token, Expires: a.expires}, nil
}

// Heartbeat renews an application's lease.
type Heartbeat struct {
	App   string
	Now   time.Time
	Lease time.Duration
}

// Heartbeat applies c and returns the new expiry; ErrAppNotFound for an
// unknown application.
func (s *State) Heartbeat(c Heartbeat) (time.Time, error) {
	a, ok := s.apps[c.App]
	if !ok {
		return time.Time{}, fmt.Errorf("%w: %q", ErrAppNotFound, c.App)
	}
	a.expires = c.Now.Add(c.Lease)
	return a.expires, nil
}

// Removal is what was removed from the State and must be deleted on the
// workers: one shuffle, or a whole application (Shuffle < 0).
type Removal struct {
	// ID identifies the pending deletion (see DeletionDone); 0 when there
	// is nothing to delete (no workers).
	ID    uint64
	App   string
	Token string
	// Shuffle is the removed shuffle, or -1 for the whole application.
	Shuffle int32
	// Workers holds every location of what was removed, sorted by ID.
	Workers []WorkerRef
}

// UnregisterApp removes an application and its shuffles.
type UnregisterApp struct {
	App string
}

// UnregisterApp applies c; ErrAppNotFound for an unknown application.
func (s *State) UnregisterApp(c UnregisterApp) (Removal, error) {
	a, ok := s.apps[c.App]
	if !ok {
		return Removal{}, fmt.Errorf("%w: %q", ErrAppNotFound, c.App)
	}
	return s.removeApp(a), nil
}

// removeApp deletes a and returns its Removal.
func (s *State) removeApp(a *app) Removal {
	delete(s.apps, a.id)
	return s.record(Removal{App: a.id, Token: a.token, Shuffle: -1, Workers: workersOf(slices.Collect(maps.Values(a.shuffles))...)})
}

// Expire removes every application whose lease ran out at or before Now.
type Expire struct {
	Now time.Time
}

// Expire applies c and returns the removals, sorted by application id.
func (s *State) Expire(c Expire) []Removal {
	var out []Removal
	// In id order: each Removal's ID must be the same on every replica.
	for _, id := range slices.Sorted(maps.Keys(s.apps)) {
		if a := s.apps[id]; !c.Now.Before(a.expires) {
			out = append(out, s.removeApp(a))
		}
	}
	return out
}

// AppInfo describes an application for Status.
type AppInfo struct {
	ID       string
	Expires  time.Time
	Shuffles []int32 // sorted
}

// Apps returns every application, sorted by id.
func (s *State) Apps() []AppInfo {
	out := make([]AppInfo, 0, len(s.apps))
	for _, a := range s.apps {
		out = append(out, AppInfo{ID: a.id, Expires: a.expires, Shuffles: slices.Sorted(maps.Keys(a.shuffles))})
	}
	slices.SortFunc(out, func(a, b AppInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Counts returns the number of applications and of shuffles.
func (s *State) Counts() (apps, shuffles int) {
	for _, a := range s.apps {
		shuffles += len(a.shuffles)
	}
	return len(s.apps), shuffles
}

// Token returns an application's token, for calls to workers on its
// behalf; false for an unknown application.
func (s *State) Token(appID string) (string, bool) {
	a, ok := s.apps[appID]
	if !ok {
		return "", false
	}
	return a.token, true
}
