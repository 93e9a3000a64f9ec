package nbd_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nbdinfoExport is the part of `nbdinfo --json` output the tests check.
type nbdinfoExport struct {
	Name       string `json:"export-name"`
	Size       int64  `json:"export-size"`
	ReadOnly   bool   `json:"is_read_only"`
	CanFlush   bool   `json:"can_flush"`
	CanFUA     bool   `json:"can_fua"`
	CanTrim    bool   `json:"can_trim"`
	CanZero    bool   `json:"can_zero"`
	MultiConn  bool   `json:"can_multi_conn"`
	BlockMax   int64  `json:"block_size_maximum"`
	BlockPref  int64  `json:"block_size_preferred"`
	BlockMin   int64  `json:"block_size_minimum"`
	Structured bool   `json:"protocol_structured_replies"`
}

func parseNbdinfo(t *testing.T, out string) []nbdinfoExport {
	t.Helper()
	var info struct {
		Exports []nbdinfoExport `json:"exports"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("parsing nbdinfo --json: %v\n%s", err, out)
	}
	return info.Exports
}

// TestNbdinfo checks size, writability, the advertised flags and block
// sizes as nbdinfo (libnbd, NBD_OPT_GO with NBD_INFO_BLOCK_SIZE) sees them.
func TestNbdinfo(t *testing.T) {
	ts := startServer(t, "tcp")
	nbdinfo := toolPath(t, "nbdinfo", "libnbd-bin")
	exports := parseNbdinfo(t, mustRun(t, nbdinfo, "--json", ts.uri()))
	want := nbdinfoExport{Name: "mem", Size: memSize, CanFlush: true, CanFUA: true, CanTrim: true,
		CanZero: true, MultiConn: true, BlockMin: 1, BlockPref: 4096, BlockMax: 32 << 20}
	if len(exports) != 1 || exports[0] != want {
		t.Fatalf("nbdinfo exports = %+v, want [%+v]", exports, want)
	}
}

// TestNbdinfoListUnix lists the exports (NBD_OPT_LIST, then NBD_OPT_INFO
// for each) over a unix socket.
func TestNbdinfoListUnix(t *testing.T) {
	ts := startServer(t, "unix")
	nbdinfo := toolPath(t, "nbdinfo", "libnbd-bin")
	exports := parseNbdinfo(t, mustRun(t, nbdinfo, "--list", "--json", "nbd+unix://?socket="+ts.addr))
	if len(exports) != 1 || exports[0].Name != "mem" || exports[0].Size != memSize {
		t.Fatalf("nbdinfo --list exports = %+v, want one 64 MiB export named mem", exports)
	}
}

// TestNbdinfoUnknownExport checks that an unknown name is refused.
func TestNbdinfoUnknownExport(t *testing.T) {
	ts := startServer(t, "tcp")
	nbdinfo := toolPath(t, "nbdinfo", "libnbd-bin")
	if out, err := runTool(t, nbdinfo, "nbd://"+ts.addr+"/nosuch"); err == nil {
		t.Fatalf("nbdinfo of an unknown export succeeded:\n%s", out)
	}
	mustRun(t, nbdinfo, ts.uri())
}

// TestQemuIOPatterns writes and reads back patterns with qemu-io, aligned
// and unaligned, and proves the read assertion fails on a wrong pattern.
func TestQemuIOPatterns(t *testing.T) {
	ts := startServer(t, "tcp")
	qemuIO := toolPath(t, "qemu-io", "qemu-utils")
	mustRun(t, qemuIO, "-f", "raw", ts.uri(),
		"-c", "write -P 0xab 0 1M", "-c", "read -P 0xab 0 1M",
		"-c", "write -P 0x5 1048573 7000", "-c", "read -P 0x5 1048573 7000")
	out, err := runTool(t, qemuIO, "-f", "raw", ts.uri(), "-c", "read -P 0xab 1048573 7000")
	if err == nil || !strings.Contains(out, "Pattern verification failed") {
		t.Fatalf("reading a wrong pattern: err=%v, want a pattern verification failure\n%s", err, out)
	}
	mustRun(t, qemuIO, "-f", "raw", ts.uri(), "-c", "read -P 0xab 0 1048573",
		"-c", "write -z 0 4k", "-c", "read -P 0 0 4k", "-c", "discard 8k 64k", "-c", "read -P 0 8k 64k",
		"-c", "write -P 0x9 1M 8k", "-c", "write -z -u 1M 8k", "-c", "read -P 0 1M 8k",
		"-c", "flush", "-c", "write -f -P 0x7 67104768 4k", "-c", "read -P 0x7 67104768 4k")
}

// TestQemuIOPastEnd checks that a write past the end fails and that the
// server keeps serving.
func TestQemuIOPastEnd(t *testing.T) {
	ts := startServer(t, "tcp")
	qemuIO := toolPath(t, "qemu-io", "qemu-utils")
	out, _ := runTool(t, qemuIO, "-f", "raw", ts.uri(), "-c", "write -P 1 67108860 8")
	if !strings.Contains(out, "write failed") {
		t.Fatalf("write past the end did not fail:\n%s", out)
	}
	mustRun(t, qemuIO, "-f", "raw", ts.uri(), "-c", "write -P 1 67108856 8", "-c", "read -P 1 67108856 8")
}

// TestNbdcopyRoundTrip copies 16 MiB of random data into the export and
// back out with nbdcopy.
func TestNbdcopyRoundTrip(t *testing.T) {
	ts := startServer(t, "tcp")
	nbdcopy := toolPath(t, "nbdcopy", "libnbd-bin")
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
	want := make([]byte, 16<<20)
	_, _ = rand.Read(want)
	if err := os.WriteFile(src, want, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nbdcopy, src, ts.uri())
	mustRun(t, nbdcopy, ts.uri(), dst)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != memSize || !bytes.Equal(got[:len(want)], want) || bytes.ContainsFunc(got[len(want):], func(r rune) bool { return r != 0 }) {
		t.Fatalf("nbdcopy round trip: got %d bytes, first 16 MiB equal: %v", len(got), bytes.Equal(got[:min(len(got), len(want))], want))
	}
}

// TestFioVerify runs fio's nbd engine (libnbd, 8 requests in flight) with
// crc32c verification.
func TestFioVerify(t *testing.T) {
	ts := startServer(t, "tcp")
	fio := toolPath(t, "fio", "fio")
	mustRun(t, fio, "--ioengine=nbd", "--uri="+ts.uri(), "--rw=randwrite", "--bs=4k",
		"--iodepth=8", "--size=16m", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0", "--name=t")
}
