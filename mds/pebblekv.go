package mds

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/pebbleutil"
	"basalt/internal/vfsutil"
)

// PebbleKV is a KV in one Pebble DB. Every write is synced before it
// returns. It is safe for concurrent use.
type PebbleKV struct {
	db *pebble.DB
}

var _ KV = (*PebbleKV)(nil)

// OpenPebbleKV opens (creating it if needed) the Pebble DB in dir on fs.
// log receives Pebble's own logs (Info at Debug level).
func OpenPebbleKV(fs vfs.FS, dir string, log *slog.Logger) (*PebbleKV, error) {
	if err := vfsutil.MkdirAll(fs, dir); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Logger: pebbleutil.Logger(log)})
	if err != nil {
		return nil, fmt.Errorf("opening metadata store %s: %w", dir, err)
	}
	return &PebbleKV{db: db}, nil
}

// Get implements KV.
func (k *PebbleKV) Get(key []byte) ([]byte, error) {
	v, closer, err := k.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// Set implements KV.
func (k *PebbleKV) Set(key, value []byte) error { return k.db.Set(key, value, pebble.Sync) }

// Delete implements KV.
func (k *PebbleKV) Delete(key []byte) error { return k.db.Delete(key, pebble.Sync) }

// Scan implements KV.
func (k *PebbleKV) Scan(prefix []byte, fn func(key, value []byte) error) error {
	opts := &pebble.IterOptions{}
	if len(prefix) > 0 { // an empty non-nil bound trips Pebble's invariant checks
		opts.LowerBound, opts.UpperBound = prefix, pebbleutil.PrefixEnd(prefix)
	}
	it, err := k.db.NewIter(opts)
	if err != nil {
		return err
	}
	for ok := it.First(); ok && err == nil; ok = it.Next() {
		err = fn(it.Key(), it.Value())
	}
	return errors.Join(err, it.Error(), it.Close())
}

// Apply implements KV.
func (k *PebbleKV) Apply(b *Batch) error {
	pb := k.db.NewBatch()
	defer pb.Close()
	for _, op := range b.Ops() {
		if err := applyOp(pb, op); err != nil {
			return err
		}
	}
	return k.db.Apply(pb, pebble.Sync)
}

func applyOp(pb *pebble.Batch, op BatchOp) error {
	if op.Delete {
		return pb.Delete(op.Key, nil)
	}
	return pb.Set(op.Key, op.Value, nil)
}

// Close closes the DB. Writes already returned are durable.
func (k *PebbleKV) Close() error { return k.db.Close() }
