package nbd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"basalt/nbd"
)

// sparseRanges are the ranges writeSparse fills; the rest of the export
// stays unallocated.
var sparseRanges = []struct{ off, length int64 }{
	{0, 4096}, {1 << 20, 8192}, {5<<20 + 4096, 4096}, {memSize - 4096, 4096},
}

// writeSparse writes a distinct byte into each of sparseRanges of mem and
// returns the export's expected content.
func writeSparse(t *testing.T, mem *nbd.MemBackend) []byte {
	t.Helper()
	want := make([]byte, memSize)
	for i, r := range sparseRanges {
		p := bytes.Repeat([]byte{byte(0xa0 + i)}, int(r.length))
		if _, err := mem.WriteAt(context.Background(), p, r.off); err != nil {
			t.Fatal(err)
		}
		copy(want[r.off:], p)
	}
	return want
}

// mapEntry is one line of `nbdinfo --map`: a range and its base:allocation
// flags (0 data, 3 hole|zero).
type mapEntry struct {
	off, length int64
	flags       int
}

// parseMap parses `nbdinfo --map` output, merging neighbours with the same
// flags (nbdinfo may split the export across several requests).
func parseMap(t *testing.T, out string) []mapEntry {
	t.Helper()
	var got []mapEntry
	for line := range strings.Lines(strings.TrimSpace(out)) {
		f := strings.Fields(line)
		if len(f) < 3 {
			t.Fatalf("nbdinfo --map line %q", line)
		}
		off, err1 := strconv.ParseInt(f[0], 10, 64)
		length, err2 := strconv.ParseInt(f[1], 10, 64)
		flags, err3 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("nbdinfo --map line %q", line)
		}
		if n := len(got); n > 0 && got[n-1].flags == flags && got[n-1].off+got[n-1].length == off {
			got[n-1].length += length
			continue
		}
		got = append(got, mapEntry{off, length, flags})
	}
	return got
}

// TestNbdinfoMap checks NBD_CMD_BLOCK_STATUS through `nbdinfo --map`: the
// written pages are data, everything else a hole that reads as zeros.
func TestNbdinfoMap(t *testing.T) {
	ts := startServer(t, "tcp")
	writeSparse(t, ts.mem)
	nbdinfo := toolPath(t, "nbdinfo", "libnbd-bin")
	got := parseMap(t, mustRun(t, nbdinfo, "--map", ts.uri()))
	want := []mapEntry{
		{0, 4096, 0}, {4096, 1<<20 - 4096, 3}, {1 << 20, 8192, 0}, {1<<20 + 8192, 4<<20 - 4096, 3},
		{5<<20 + 4096, 4096, 0}, {5<<20 + 8192, memSize - 4096 - (5<<20 + 8192), 3}, {memSize - 4096, 4096, 0},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("nbdinfo --map = %v, want %v", got, want)
	}
}

// TestNbdinfoMapWithoutAllocator checks that a backend without Allocator is
// reported as data throughout.
func TestNbdinfoMapWithoutAllocator(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	fb, err := nbd.OpenFileBackend(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fb.Close() })
	ts := startServerWith(t, "tcp", fb)
	nbdinfo := toolPath(t, "nbdinfo", "libnbd-bin")
	got := parseMap(t, mustRun(t, nbdinfo, "--map", ts.uri()))
	if want := []mapEntry{{0, 1 << 20, 0}}; !slices.Equal(got, want) {
		t.Fatalf("nbdinfo --map = %v, want %v", got, want)
	}
}

// TestNbdinfoContexts checks that nbdinfo negotiates structured replies and
// finds base:allocation (NBD_OPT_LIST_META_CONTEXT).
func TestNbdinfoContexts(t *testing.T) {
	ts := startServer(t, "tcp")
	nbdinfo := toolPath(t, "nbdinfo", "libnbd-bin")
	out := mustRun(t, nbdinfo, "--json", ts.uri())
	var info struct {
		Structured bool `json:"structured"`
		Exports    []struct {
			Contexts []string `json:"contexts"`
		} `json:"exports"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("parsing nbdinfo --json: %v\n%s", err, out)
	}
	if !info.Structured || len(info.Exports) != 1 || !slices.Contains(info.Exports[0].Contexts, "base:allocation") {
		t.Fatalf("nbdinfo --json: structured %v, exports %+v; want structured replies and base:allocation", info.Structured, info.Exports)
	}
}

// TestQemuImgConvertSparse copies a sparse export to a raw file with
// qemu-img (structured reads and block status): the copy has the same
// content and only the written ranges are allocated on disk.
func TestQemuImgConvertSparse(t *testing.T) {
	ts := startServer(t, "tcp")
	want := writeSparse(t, ts.mem)
	qemuImg := toolPath(t, "qemu-img", "qemu-utils")
	out := filepath.Join(t.TempDir(), "out.img")
	mustRun(t, qemuImg, "convert", "-f", "raw", "-O", "raw", ts.uri(), out)
	mustRun(t, qemuImg, "compare", "-f", "raw", "-F", "raw", ts.uri(), out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("converted image differs from the export's content (%d bytes, want %d)", len(got), len(want))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(out, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes, %d allocated", out, st.Size, st.Blocks*512)
	if used := st.Blocks * 512; used > 1<<20 {
		t.Fatalf("converted image uses %d bytes on disk of %d, want a sparse file (<= 1 MiB)", used, st.Size)
	}
}

// TestQemuIOStructuredHoles reads holes and data with qemu-io (which
// negotiates structured replies) across hole/data boundaries.
func TestQemuIOStructuredHoles(t *testing.T) {
	ts := startServer(t, "tcp")
	writeSparse(t, ts.mem)
	qemuIO := toolPath(t, "qemu-io", "qemu-utils")
	out := mustRun(t, qemuIO, "-f", "raw", ts.uri(),
		"-c", "read -P 0xa0 0 4k", "-c", "read -P 0 4k 1020k", "-c", "read -P 0xa1 1M 8k",
		"-c", "read -P 0 1040k 4k", "-c", "read -v 1048572 8", "-c", "write -P 0x3c 2M 6k",
		"-c", "read -P 0x3c 2M 6k", "-c", "read -P 0 2054k 2k")
	if want := "000ffffc:  00 00 00 00 a1 a1 a1 a1"; !strings.Contains(out, want) {
		t.Fatalf("read across a hole/data boundary: want %q in the output", want)
	}
}
