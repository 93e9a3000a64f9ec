package e2e_test

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestQemuIOOverNBDOnAVolume exports a Basalt volume (MDS and three
// chunkservers as processes) through the nbd package and drives it with
// qemu-io: patterns at aligned and unaligned offsets across chunk and
// segment boundaries are written and verified, also after a chunkserver
// is killed with SIGKILL.
func TestQemuIOOverNBDOnAVolume(t *testing.T) {
	c := startCluster(t)
	c.createVolume("nbdvol", "64MiB")
	uri := serveNBD(t, c, "nbdvol")
	qemuIO(t, uri,
		"write -P 0xab 0 64k", "read -P 0xab 0 64k",
		"write -P 0x11 1048573 7000", "read -P 0x11 1048573 7000", // across a chunk boundary, unaligned
		"write -P 0x22 4190000 300000", "read -P 0x22 4190000 300000", // across a segment boundary
		"read -P 0 40M 1M", // never written: zeros
	)
	c.cs[0].kill9()
	qemuIO(t, uri,
		"read -P 0xab 0 64k", "read -P 0x22 4190000 300000",
		"write -P 0x33 8M 1M", "read -P 0x33 8M 1M",
	)
	c.cs[0].start()
	c.waitHealthy()
	qemuIO(t, uri, "read -P 0x11 1048573 7000", "read -P 0x33 8M 1M")
}

func qemuIO(t *testing.T, uri string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "raw", uri}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("/usr/bin/qemu-io", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
	}
}

// TestSparseCopiesAndFioOverNBDOnAVolume: a 256 MiB sparse image goes into
// a Basalt volume with qemu-img convert and comes back identical and
// sparse; nbdcopy reads the volume out; fio writes it with crc32c
// verification.
func TestSparseCopiesAndFioOverNBDOnAVolume(t *testing.T) {
	c := startCluster(t)
	c.createVolume("img", "256MiB")
	uri := serveNBD(t, c, "img")
	dir := t.TempDir()
	src, back, copied := filepath.Join(dir, "src.img"), filepath.Join(dir, "back.img"), filepath.Join(dir, "copied.img")
	run(t, "/usr/bin/qemu-img", "create", "-f", "raw", src, "256M")
	run(t, "/usr/bin/qemu-io", "-f", "raw", src, "-c", "write -P 0x5a 0 1M", "-c", "write -P 0xa5 100M 3M", "-c", "write -P 0x11 255M 1M")
	run(t, "/usr/bin/qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, uri)
	run(t, "/usr/bin/qemu-img", "convert", "-f", "raw", "-O", "raw", uri, back)
	run(t, "/usr/bin/qemu-img", "compare", "-f", "raw", "-F", "raw", src, back)
	if used := allocatedBytes(t, back); used > 16<<20 {
		t.Fatalf("copy of a 5 MiB-written image allocates %d bytes: not sparse", used)
	}
	run(t, "/usr/bin/nbdcopy", uri, copied)
	run(t, "/usr/bin/qemu-img", "compare", "-f", "raw", "-F", "raw", src, copied)
	run(t, "/usr/bin/fio", "--ioengine=nbd", "--uri="+uri, "--rw=randwrite", "--bs=4k", "--iodepth=8",
		"--size=16m", "--offset=128m", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0", "--name=verify")
}

// serveNBD starts a basalt-nbd gateway for c and returns the TCP URI of
// volume name.
func serveNBD(t *testing.T, c *cluster, name string) string {
	t.Helper()
	return c.startGateway(t).uri(name)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// allocatedBytes is the disk space a file uses (st_blocks * 512).
func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
