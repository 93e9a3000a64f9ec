package e2e_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"basalt/client"
	"basalt/internal/testnet"
)

// gateway is a basalt-nbd process serving c's volumes over TCP and a unix
// socket.
type gateway struct {
	*proc
	tcp, socket string
}

// startGateway starts a basalt-nbd for c; it is stopped (SIGTERM, exit 0
// checked) when the test ends.
func (c *cluster) startGateway(t testing.TB) *gateway {
	t.Helper()
	g := &gateway{tcp: testnet.FreeAddr(t), socket: filepath.Join(t.TempDir(), "nbd.sock")}
	httpAddr := testnet.FreeAddr(t)
	g.proc = &proc{t: t, name: "basalt-nbd", http: httpAddr, log: filepath.Join(c.dir, fmt.Sprintf("nbd-%s.log", strings.ReplaceAll(g.tcp, ":", "_"))), args: []string{
		"--listen", g.tcp, "--socket", g.socket, "--http", httpAddr, "--mds", c.mdsRPC, "--client-name", "gw-" + g.tcp,
	}}
	g.start()
	t.Cleanup(func() {
		if t.Failed() {
			g.dumpLog()
		}
		g.stop()
	})
	return g
}

// uri is volume name's URI over TCP.
func (g *gateway) uri(name string) string { return "nbd://" + g.tcp + "/" + name }

// unixURI is volume name's URI over the unix socket.
func (g *gateway) unixURI(name string) string {
	return "nbd+unix:///" + name + "?socket=" + g.socket
}

// metric returns the value of the sample line that starts with series.
func (g *gateway) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("metric %s not exported:\n%s", series, body)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGatewayExt4OverNBDFuseAndWriterSession runs the basalt-nbd daemon
// against a cluster of processes and uses the volume the way a user
// would: nbdinfo over the unix socket; nbdfuse exposes the export as a
// file; mkfs.ext4, a loop mount, files written, umount, e2fsck -fn clean,
// remount and the files are intact. While nbdfuse is connected the
// gateway holds the volume's writer session: a second gateway cannot serve
// it and the client library cannot open it for writing; once nbdfuse is
// gone the session is released. The metrics count the bytes written.
func TestGatewayExt4OverNBDFuseAndWriterSession(t *testing.T) {
	c := startCluster(t)
	c.createVolume("fs", "256MiB")
	g := c.startGateway(t)
	out := runOut(t, "/usr/bin/nbdinfo", "--size", g.unixURI("fs"))
	if strings.TrimSpace(out) != "268435456" {
		t.Fatalf("nbdinfo --size over the unix socket = %q, want 268435456", out)
	}

	dir := t.TempDir()
	disk := nbdfuse(t, filepath.Join(dir, "fuse"), g.unixURI("fs"))
	if _, err := c.tryOpen("fs", true); !errors.Is(err, client.ErrWriterExists) {
		t.Fatalf("opening fs for writing while nbdfuse is connected: %v, want ErrWriterExists", err)
	}
	g2 := c.startGateway(t)
	if out, err := exec.Command("/usr/bin/qemu-io", "-f", "raw", g2.uri("fs"), "-c", "read 0 4k").CombinedOutput(); err == nil {
		t.Fatalf("a second gateway served a volume another gateway writes:\n%s", out)
	}

	run(t, "/sbin/mkfs.ext4", "-F", "-q", disk)
	files := writeFilesOnLoop(t, disk, filepath.Join(dir, "mnt"))
	run(t, "/sbin/e2fsck", "-fn", disk)
	checkFilesOnLoop(t, disk, filepath.Join(dir, "mnt"), files)
	unmountFuse(t, filepath.Join(dir, "fuse"))

	waitFor(t, 30*time.Second, "writer session released after nbdfuse disconnected", func() error {
		v, err := c.tryOpen("fs", true)
		if err != nil {
			return err
		}
		return v.Close()
	})
	if w := g.metric(t, `basalt_nbd_bytes_total{op="write"}`); w < 1<<20 {
		t.Fatalf("basalt_nbd_bytes_total{op=write} = %v after mkfs and 4 MiB of files", w)
	}
	if open := g.metric(t, "basalt_nbd_volumes_open"); open != 0 {
		t.Fatalf("basalt_nbd_volumes_open = %v with no client connected", open)
	}
}

// nbdfuse exposes uri as the file dir/disk with nbdfuse and returns its
// path; the mount is removed when the test ends.
func nbdfuse(t *testing.T, dir, uri string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/nbdfuse", filepath.Join(dir, "disk"), uri)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = exec.Command("/bin/umount", "-l", dir).Run()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	disk := filepath.Join(dir, "disk")
	waitFor(t, 30*time.Second, "nbdfuse to expose the export", func() error {
		select {
		case <-exited:
			return fmt.Errorf("nbdfuse exited: %s", stderr.String())
		default:
		}
		fi, err := os.Stat(disk)
		if err != nil {
			return err
		}
		if fi.Size() == 0 {
			return errors.New("size 0")
		}
		return nil
	})
	return disk
}

// unmountFuse unmounts an nbdfuse mount point, which makes nbdfuse close
// its NBD connection and exit.
func unmountFuse(t *testing.T, dir string) {
	t.Helper()
	run(t, "/bin/umount", dir)
}

// writeFilesOnLoop loop-mounts the ext4 image file disk on mnt, writes
// files of random bytes, unmounts, and returns their contents by name.
func writeFilesOnLoop(t *testing.T, disk, mnt string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	withLoopMount(t, disk, mnt, func() {
		for i := range 16 {
			b := make([]byte, 256<<10+i*4099)
			_, _ = rand.Read(b)
			name := fmt.Sprintf("file%02d", i)
			if err := os.WriteFile(filepath.Join(mnt, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
			files[name] = b
		}
	})
	return files
}

// checkFilesOnLoop mounts disk again and compares every file.
func checkFilesOnLoop(t *testing.T, disk, mnt string, files map[string][]byte) {
	t.Helper()
	withLoopMount(t, disk, mnt, func() {
		for name, want := range files {
			got, err := os.ReadFile(filepath.Join(mnt, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s after remount: %d bytes (err %v), want %d identical bytes", name, len(got), err, len(want))
			}
		}
	})
}

// withLoopMount attaches disk to a loop device, mounts it on mnt, runs fn,
// then syncs, unmounts and detaches the loop device.
func withLoopMount(t *testing.T, disk, mnt string, fn func()) {
	t.Helper()
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	loop := strings.TrimSpace(runOut(t, "/sbin/losetup", "-f", "--show", disk))
	defer func() { _ = exec.Command("/sbin/losetup", "-d", loop).Run() }()
	run(t, "/bin/mount", loop, mnt)
	defer func() { _ = exec.Command("/bin/umount", mnt).Run() }()
	fn()
	run(t, "/bin/sync")
	run(t, "/bin/umount", mnt)
	run(t, "/sbin/losetup", "-d", loop)
}

// runOut runs a command and returns its stdout, failing the test on error.
func runOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %v: %v\n%s%s", name, args, err, out, ee.Stderr)
		}
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}
