package mds

// KV is the metadata store as the Server uses it: an ordered byte-string
// map whose every write is durable when it returns. PebbleKV is the
// single-replica implementation; a raft-replicated one can replace it
// (Config.KV) without touching the Server.
//
// Implementations must be safe for concurrent use. Keys and values passed
// in may be reused by the caller after the call returns.
type KV interface {
	// Get returns a copy of the value of key, or ErrKeyNotFound.
	Get(key []byte) ([]byte, error)
	// Set stores value under key, durably.
	Set(key, value []byte) error
	// Delete removes key, durably; deleting a missing key is not an error.
	Delete(key []byte) error
	// Scan calls fn for every key with the given prefix, in key order,
	// and stops at the first error fn returns, returning it. key and value
	// are valid only during the call.
	Scan(prefix []byte, fn func(key, value []byte) error) error
	// Apply applies every operation of b atomically and durably: after a
	// crash either all of them are visible or none.
	Apply(b *Batch) error
}

// Batch is a list of writes that KV.Apply applies atomically, in order.
// The zero value is an empty batch. A Batch is not safe for concurrent use.
type Batch struct {
	ops []BatchOp
}

// BatchOp is one write of a Batch: a delete when Delete is set, else a set
// of Key to Value.
type BatchOp struct {
	Key, Value []byte
	Delete     bool
}

// Set adds a write of value under key. The batch keeps the slices.
func (b *Batch) Set(key, value []byte) { b.ops = append(b.ops, BatchOp{Key: key, Value: value}) }

// Delete adds a deletion of key. The batch keeps the slice.
func (b *Batch) Delete(key []byte) { b.ops = append(b.ops, BatchOp{Key: key, Delete: true}) }

// Ops returns the batch's writes in order, for KV implementations.
func (b *Batch) Ops() []BatchOp { return b.ops }

// Len returns the number of writes in the batch.
func (b *Batch) Len() int { return len(b.ops) }
