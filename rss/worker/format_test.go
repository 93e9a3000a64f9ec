package worker

import (
	"errors"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestHeaderAndIndex: a header matches its entry and no other; an index
// decodes to what was encoded and rejects truncation.
func TestHeaderAndIndex(t *testing.T) {
	es := []entry{
		{Map: 0, Attempt: 0, Seq: 0, Offset: 0, Length: 10, CRC: 0xdeadbeef},
		{Map: 1<<31 - 1, Attempt: 3, Seq: 7, Offset: 1 << 40, Length: 1<<32 - 1, CRC: 1},
	}
	for _, e := range es {
		h := appendHeader(nil, e)
		if len(h) != headerSize {
			t.Fatalf("header of %d bytes", len(h))
		}
		if why := checkHeader(h, e); why != "" {
			t.Fatalf("header does not match its entry: %s", why)
		}
		for _, other := range []entry{{Map: e.Map + 1}, {Map: e.Map, Attempt: e.Attempt, Seq: e.Seq, Length: e.Length, CRC: e.CRC + 1}} {
			if checkHeader(h, other) == "" {
				t.Fatalf("header of %+v matches %+v", e, other)
			}
		}
	}
	b := encodeIndex(es)
	got, err := decodeIndex(b)
	if err != nil || !slices.Equal(got, es) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, es)
	}
	if _, err := decodeIndex(b[:len(b)-1]); err == nil {
		t.Fatal("truncated index decoded")
	}
	if got, err := decodeIndex(encodeIndex(nil)); err != nil || len(got) != 0 {
		t.Fatalf("empty index: %v %v", got, err)
	}
}

// TestKeysAndNames: keys and file names parse back; an application's keys
// do not share a prefix with a longer application id's.
func TestKeysAndNames(t *testing.T) {
	k := partKey{shuffleKey{"app-x", 3}, 17, 2}
	if got, ok := parseIndexKey(indexKey(k)); !ok || got != k {
		t.Fatalf("index key parsed to %+v %v", got, ok)
	}
	if got, ok := parseShuffleKey(shufflePrefix(shuffleKeyTag, k.shuffleKey)); !ok || got != k.shuffleKey {
		t.Fatalf("shuffle key parsed to %+v %v", got, ok)
	}
	if _, ok := parseIndexKey(shufflePrefix(shuffleKeyTag, k.shuffleKey)); ok {
		t.Fatal("a shuffle key parsed as an index key")
	}
	long := indexKey(partKey{shuffleKey{"app-xy", 3}, 17, 2})
	if p := appPrefix(indexKeyTag, "app-x"); string(long[:len(p)]) == string(p) {
		t.Fatal("app-x's prefix covers app-xy's keys")
	}
	if p, e, ok := parseFileName(fileName(k)); !ok || p != 17 || e != 2 {
		t.Fatalf("file name parsed to %d %d %v", p, e, ok)
	}
	for _, bad := range []string{"17-2.dat", "17.data", "-1-2.data", "a-2.data", "17-2.data.tmp"} {
		if _, _, ok := parseFileName(bad); ok {
			t.Errorf("%q parsed as a partition file name", bad)
		}
	}
}

func TestCheckApp(t *testing.T) {
	for _, ok := range []string{"app-1", "application_1700000000000_0001", "local-1700000000000", "a.b"} {
		if err := checkApp(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", ".hidden", "a/b", "a b", string(make([]byte, 201))} {
		if err := checkApp(bad); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q: got %v, want ErrInvalidArgument", bad, err)
		}
	}
}

// TestPickDir: new files go to the directory with the fewest open files,
// ties in turn.
func TestPickDir(t *testing.T) {
	w := &Worker{}
	w.mu.perDir = []int{0, 0, 0}
	var got []int
	for range 6 {
		d := w.pickDirLocked()
		w.mu.perDir[d]++
		got = append(got, d)
	}
	if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("picked %v, want %v", got, want)
	}
	w.mu.perDir = []int{5, 1, 3}
	if d := w.pickDirLocked(); d != 1 {
		t.Fatalf("picked %d, want the least loaded 1", d)
	}
}

// TestTruncateWithoutCapability: a file that can be neither truncated nor
// has a descriptor is fine at the wanted size and an error otherwise.
func TestTruncateWithoutCapability(t *testing.T) {
	fs := vfs.NewMem()
	f, err := fs.Create("/f", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if err := truncate(f, 100); err != nil {
		t.Fatalf("truncate to the current size: %v", err)
	}
	if err := truncate(f, 50); !errors.Is(err, errNoTruncate) {
		t.Fatalf("truncate of an in-memory file: got %v, want errNoTruncate", err)
	}
}
