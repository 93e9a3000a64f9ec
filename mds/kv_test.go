package mds_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/mds"
)

func openKV(t *testing.T, fs vfs.FS) *mds.PebbleKV {
	t.Helper()
	kv, err := mds.OpenPebbleKV(fs, "/kv", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// scan returns "key=value" for every key under prefix.
func scan(t *testing.T, kv mds.KV, prefix string) []string {
	t.Helper()
	var out []string
	noErr(t, kv.Scan([]byte(prefix), func(k, v []byte) error {
		out = append(out, fmt.Sprintf("%s=%s", k, v))
		return nil
	}))
	return out
}

func TestPebbleKV(t *testing.T) {
	fs := vfs.NewCrashableMem()
	kv := openKV(t, fs)
	if _, err := kv.Get([]byte("a")); !errors.Is(err, mds.ErrKeyNotFound) {
		t.Fatalf("get of a missing key: %v", err)
	}
	noErr(t, kv.Set([]byte("a1"), []byte("x")))
	var b mds.Batch
	b.Set([]byte("a2"), []byte("y"))
	b.Set([]byte("b1"), []byte("z"))
	b.Delete([]byte("a1"))
	b.Set([]byte("a\xff"), []byte("w"))
	noErr(t, kv.Apply(&b))
	noErr(t, kv.Delete([]byte("missing")))
	if got := fmt.Sprint(scan(t, kv, "a")); got != "[a2=y a\xff=w]" {
		t.Fatalf("scan a: %q", got)
	}
	if v, err := kv.Get([]byte("b1")); err != nil || string(v) != "z" {
		t.Fatalf("get b1: %q, %v", v, err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	noErr(t, kv.Close())
	kv = openKV(t, crashed)
	defer kv.Close()
	if got := fmt.Sprint(scan(t, kv, "")); got != "[a2=y a\xff=w b1=z]" {
		t.Fatalf("after a crash: %q", got)
	}
}

func TestPebbleKVScanStops(t *testing.T) {
	kv := openKV(t, vfs.NewMem())
	defer kv.Close()
	for _, k := range []string{"k1", "k2", "k3"} {
		noErr(t, kv.Set([]byte(k), nil))
	}
	stop := errors.New("stop")
	n := 0
	err := kv.Scan([]byte("k"), func(_, _ []byte) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("got %v after %d keys, want stop after 1", err, n)
	}
}
