package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"basalt/nbd/attach"
	"basalt/nbd/kernel"
	"basalt/tools/cli"
)

// TestNBDCommandsWithoutDriver checks what a user sees on a host whose
// kernel has no nbd driver (this machine's; the VM test in internal/e2e
// covers a kernel that has one): attach, list and detach fail at once
// with the driver named, before any cluster is contacted.
func TestNBDCommandsWithoutDriver(t *testing.T) {
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		t.Fatal("this host has an nbd driver: the test's premise changed; attach is covered by the VM test, adjust this one")
	}
	for _, args := range [][]string{
		{"nbd", "attach", "demo", "--foreground", "--mds", "127.0.0.1:1"},
		{"nbd", "list", "-o", "json"},
		{"nbd", "detach", "/dev/nbd0"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var out, errOut bytes.Buffer
		start := time.Now()
		err := cli.Run(ctx, args, &out, &errOut)
		cancel()
		if !errors.Is(err, kernel.ErrNoDriver) || time.Since(start) > 3*time.Second {
			t.Errorf("basalt %v: %v after %v, want kernel.ErrNoDriver at once", args, err, time.Since(start))
		}
	}
	if _, err := attach.ParseDevice("/dev/sda"); !errors.Is(err, attach.ErrNotMapped) {
		t.Errorf("ParseDevice(/dev/sda) = %v", err)
	}
}
