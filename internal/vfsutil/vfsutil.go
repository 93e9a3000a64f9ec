package vfsutil

import (
	"errors"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SyncDir fsyncs a directory, making its entries (creates, renames,
// removes) durable.
func SyncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// MkdirAll creates dir and its parents, and makes them durable by syncing
// every directory from dir up to the root (a crash cannot lose any level).
func MkdirAll(fs vfs.FS, dir string) error {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for {
		if err := SyncDir(fs, dir); err != nil {
			return err
		}
		parent := fs.PathDir(dir)
		if parent == dir || parent == "" {
			return nil // synced the root ("/" or ".")
		}
		dir = parent
	}
}

// WriteFile replaces path with data atomically and durably: it writes a
// temporary file, syncs it, renames it over path and syncs the directory.
// A crash leaves either the old or the new contents.
func WriteFile(fs vfs.FS, path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		_ = fs.Remove(tmp)
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(fs, fs.PathDir(path))
}
