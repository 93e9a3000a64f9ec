package e2e_test

import (
	"context"
	"net"
	"os/exec"
	"sync"
	"testing"

	"basalt/nbd"
)

// TestQemuIOOverNBDOnAVolume exports a Basalt volume (MDS and three
// chunkservers as processes) through the nbd package and drives it with
// qemu-io: patterns at aligned and unaligned offsets across chunk and
// segment boundaries are written and verified, also after a chunkserver
// is killed with SIGKILL.
func TestQemuIOOverNBDOnAVolume(t *testing.T) {
	c := startCluster(t)
	c.createVolume("nbdvol", "64MiB")
	v := c.open(t, "nbdvol", true)
	cfg := nbd.DefaultConfig()
	cfg.Exports = nbd.MapExports{"nbdvol": v}
	srv, err := nbd.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ctx, lis) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	uri := "nbd://" + lis.Addr().String() + "/nbdvol"
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
