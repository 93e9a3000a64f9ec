package master

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"
)

// Command is one State mutation as a value that can be logged and
// replicated (through raft/, see Replica): exactly one field is set. Its
// JSON encoding is the log format; a field is never renamed, only added.
type Command struct {
	RegisterApp       *RegisterApp       `json:"register_app,omitempty"`
	Heartbeat         *Heartbeat         `json:"heartbeat,omitempty"`
	UnregisterApp     *UnregisterApp     `json:"unregister_app,omitempty"`
	Expire            *Expire            `json:"expire,omitempty"`
	RegisterShuffle   *RegisterShuffle   `json:"register_shuffle,omitempty"`
	Revive            *Revive            `json:"revive,omitempty"`
	MapEnd            *MapEnd            `json:"map_end,omitempty"`
	CommitDone        *CommitDone        `json:"commit_done,omitempty"`
	UnregisterShuffle *UnregisterShuffle `json:"unregister_shuffle,omitempty"`
	DeletionDone      *DeletionDone      `json:"deletion_done,omitempty"`
}

// set returns how many of c's fields are set.
func (c Command) set() int {
	v, n := reflect.ValueOf(c), 0
	for i := range v.NumField() {
		if !v.Field(i).IsNil() {
			n++
		}
	}
	return n
}

// EncodeCommand returns c's log encoding; a Command with other than one
// field set is ErrInvalidArgument.
func EncodeCommand(c Command) ([]byte, error) {
	if n := c.set(); n != 1 {
		return nil, fmt.Errorf("%w: a command sets %d mutations, want 1", ErrInvalidArgument, n)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding a command: %w", err)
	}
	return b, nil
}

// DecodeCommand undoes EncodeCommand; anything else is ErrInvalidArgument.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("%w: decoding a command: %w", ErrInvalidArgument, err)
	}
	if n := c.set(); n != 1 {
		return Command{}, fmt.Errorf("%w: a logged command sets %d mutations, want 1", ErrInvalidArgument, n)
	}
	return c, nil
}

// Apply applies the one mutation c carries and returns the method's
// result (AppLease, time.Time, Removal, []Removal, Layout, Location,
// MapEndResult, CommitOutcome, or nil for DeletionDone) and error.
func (s *State) Apply(c Command) (any, error) {
	switch {
	case c.RegisterApp != nil:
		return s.RegisterApp(*c.RegisterApp)
	case c.Heartbeat != nil:
		return s.Heartbeat(*c.Heartbeat)
	case c.UnregisterApp != nil:
		return s.UnregisterApp(*c.UnregisterApp)
	case c.Expire != nil:
		return s.Expire(*c.Expire), nil
	case c.RegisterShuffle != nil:
		return s.RegisterShuffle(*c.RegisterShuffle)
	case c.Revive != nil:
		return s.Revive(*c.Revive)
	case c.MapEnd != nil:
		return s.MapEnd(*c.MapEnd)
	case c.CommitDone != nil:
		return s.CommitDone(*c.CommitDone)
	case c.UnregisterShuffle != nil:
		return s.UnregisterShuffle(*c.UnregisterShuffle)
	case c.DeletionDone != nil:
		s.DeletionDone(*c.DeletionDone)
		return nil, nil
	}
	return nil, fmt.Errorf("%w: an empty command", ErrInvalidArgument)
}

// snapshot is the encoding of a whole State (placement settings aside:
// they are configuration). Everything is sorted, so equal States encode
// to equal bytes.
type snapshot struct {
	Apps []snapApp `json:"apps"`
	// Deletions are the pending deletions, by ID.
	Deletions    []Removal `json:"deletions,omitempty"`
	LastDeletion uint64    `json:"last_deletion,omitempty"`
}

type snapApp struct {
	ID       string        `json:"id"`
	Token    string        `json:"token"`
	Expires  time.Time     `json:"expires"`
	Shuffles []snapShuffle `json:"shuffles"`
}

type snapShuffle struct {
	ID            int32        `json:"id"`
	NumMaps       int32        `json:"num_maps"`
	NumPartitions int32        `json:"num_partitions"`
	NoReplica     bool         `json:"no_replica,omitempty"`
	Run           string       `json:"run,omitempty"`
	Epochs        [][]Location `json:"epochs"`
	Winners       []MapAttempt `json:"winners"` // sorted by map index
	Ignored       []MapAttempt `json:"ignored,omitempty"`
	Committed     bool         `json:"committed,omitempty"`
	Gen           uint64       `json:"gen"`
}

// MarshalSnapshot encodes the whole State.
func (s *State) MarshalSnapshot() ([]byte, error) {
	var snap snapshot
	for _, id := range slices.Sorted(maps.Keys(s.apps)) {
		a := s.apps[id]
		sa := snapApp{ID: a.id, Token: a.token, Expires: a.expires}
		for _, sid := range slices.Sorted(maps.Keys(a.shuffles)) {
			sh := a.shuffles[sid]
			winners := slices.SortedFunc(maps.Values(sh.winners), func(x, y MapAttempt) int { return cmp.Compare(x.MapIndex, y.MapIndex) })
			sa.Shuffles = append(sa.Shuffles, snapShuffle{ID: sh.id, NumMaps: sh.numMaps, NumPartitions: sh.numPartitions,
				NoReplica: sh.noReplica, Run: sh.run, Epochs: sh.epochs, Winners: winners, Ignored: sh.ignored, Committed: sh.committed, Gen: sh.gen})
		}
		snap.Apps = append(snap.Apps, sa)
	}
	snap.Deletions, snap.LastDeletion = s.PendingDeletions(), s.lastDeletion
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("encoding the master state: %w", err)
	}
	return b, nil
}

// RestoreSnapshot replaces the State's applications and shuffles with
// those MarshalSnapshot encoded in b; on error the State is unchanged.
func (s *State) RestoreSnapshot(b []byte) error {
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("%w: decoding a master snapshot: %w", ErrInvalidArgument, err)
	}
	apps := make(map[string]*app, len(snap.Apps))
	for _, sa := range snap.Apps {
		a := &app{id: sa.ID, token: sa.Token, expires: sa.Expires, shuffles: make(map[int32]*shuffle, len(sa.Shuffles))}
		for _, ss := range sa.Shuffles {
			if len(ss.Epochs) != int(ss.NumPartitions) {
				return fmt.Errorf("%w: master snapshot: shuffle %d of %q has %d partitions and %d epoch lists",
					ErrInvalidArgument, ss.ID, sa.ID, ss.NumPartitions, len(ss.Epochs))
			}
			sh := &shuffle{id: ss.ID, numMaps: ss.NumMaps, numPartitions: ss.NumPartitions, noReplica: ss.NoReplica, run: ss.Run,
				epochs: ss.Epochs, winners: make(map[int32]MapAttempt, len(ss.Winners)), ignored: ss.Ignored,
				committed: ss.Committed, gen: ss.Gen}
			for _, w := range ss.Winners {
				sh.winners[w.MapIndex] = w
			}
			a.shuffles[ss.ID] = sh
		}
		apps[sa.ID] = a
	}
	deletions := make(map[uint64]*Removal, len(snap.Deletions))
	for _, r := range snap.Deletions {
		if r.ID == 0 || r.ID > snap.LastDeletion {
			return fmt.Errorf("%w: master snapshot: deletion ID %d (last %d)", ErrInvalidArgument, r.ID, snap.LastDeletion)
		}
		deletions[r.ID] = &r
	}
	s.apps, s.deletions, s.lastDeletion = apps, deletions, snap.LastDeletion
	return nil
}
