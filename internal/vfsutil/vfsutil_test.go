package vfsutil_test

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"basalt/internal/vfsutil"
)

// TestDurableAcrossCrash: a directory made with MkdirAll and a file
// written with WriteFile survive a crash that keeps only synced data.
func TestDurableAcrossCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := vfsutil.MkdirAll(fs, "/a/b"); err != nil {
		t.Fatal(err)
	}
	if err := vfsutil.WriteFile(fs, "/a/b/f", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := vfsutil.WriteFile(fs, "/a/b/f", []byte("two")); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	f, err := crashed.Open("/a/b/f")
	if err != nil {
		t.Fatalf("file lost in the crash: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 3)
	if _, err := f.Read(buf); err != nil || string(buf) != "two" {
		t.Fatalf("read %q, %v; want \"two\"", buf, err)
	}
	if _, err := crashed.Stat("/a/b/f.tmp"); err == nil {
		t.Fatal("temporary file left behind")
	}
}

// TestRelativeDirSurvivesCrash: the top level of a relative path is made
// durable too (the current directory is synced).
func TestRelativeDirSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := vfsutil.MkdirAll(fs, "data/mds"); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if _, err := crashed.Stat("data/mds"); err != nil {
		t.Fatalf("relative directory lost in the crash: %v", err)
	}
}
