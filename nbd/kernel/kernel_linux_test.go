package kernel_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"basalt/nbd/kernel"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// socketpair returns both ends of an AF_UNIX stream pair, closed when the
// test ends.
func socketpair(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// driverAvailable reports whether this kernel has the nbd driver loaded or
// a module that `modprobe nbd` could load.
func driverAvailable(t *testing.T) bool {
	t.Helper()
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		return true
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	mods, err := filepath.Glob(filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]), "kernel/drivers/block/nbd.ko*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(mods) > 0
}

// TestHostDriver runs the API against the host's kernel. On a kernel
// without the nbd driver (these machines: no modules at all) every call
// must say ErrNoDriver. On one with the driver, Connect must not say so,
// and a device it connects is disconnected again. The in-VM test (TestVM)
// covers a kernel with the driver in full.
func TestHostDriver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kernelEnd, _ := socketpair(t)
	o := kernel.DefaultConnectOptions()
	o.Sockets, o.SizeBytes, o.Timeout = []*os.File{kernelEnd}, 1<<20, time.Second
	idx, err := kernel.Connect(ctx, o)

	if !driverAvailable(t) {
		t.Logf("no nbd driver on this kernel; Connect says: %v", err)
		if !errors.Is(err, kernel.ErrNoDriver) {
			t.Fatalf("Connect = %d, %v; want ErrNoDriver", idx, err)
		}
		if _, err := kernel.List(ctx); !errors.Is(err, kernel.ErrNoDriver) {
			t.Errorf("List: %v, want ErrNoDriver", err)
		}
		if _, err := kernel.Status(ctx, 0); !errors.Is(err, kernel.ErrNoDriver) {
			t.Errorf("Status: %v, want ErrNoDriver", err)
		}
		if err := kernel.Disconnect(ctx, 0); !errors.Is(err, kernel.ErrNoDriver) {
			t.Errorf("Disconnect: %v, want ErrNoDriver", err)
		}
		return
	}

	t.Logf("this kernel has an nbd driver; Connect = %d, %v", idx, err)
	switch {
	case errors.Is(err, kernel.ErrNoDriver):
		t.Fatalf("Connect says ErrNoDriver, but the driver is there: %v", err)
	case errors.Is(err, os.ErrPermission):
		t.Logf("not allowed to connect (needs CAP_SYS_ADMIN): %v", err)
	case err != nil:
		t.Fatalf("Connect: %v", err)
	default:
		if err := kernel.Disconnect(ctx, idx); err != nil {
			t.Errorf("Disconnect(%d): %v", idx, err)
		}
	}
	if _, err := kernel.List(ctx); err != nil {
		t.Errorf("List: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	kernelEnd, _ := socketpair(t)
	o := kernel.DefaultConnectOptions()
	o.Sockets, o.SizeBytes = []*os.File{kernelEnd}, 1<<20
	if _, err := kernel.Connect(ctx, o); !errors.Is(err, context.Canceled) {
		t.Errorf("Connect with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := kernel.List(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a canceled context: %v, want context.Canceled", err)
	}
}

func TestConnectValidates(t *testing.T) {
	_, err := kernel.Connect(context.Background(), kernel.ConnectOptions{Index: -1, SizeBytes: 1 << 20})
	if !errors.Is(err, kernel.ErrInvalidOptions) {
		t.Errorf("Connect without sockets: %v, want ErrInvalidOptions", err)
	}
	for _, idx := range []int{-1, -5} {
		if err := kernel.Disconnect(context.Background(), idx); !errors.Is(err, kernel.ErrNoDevice) {
			t.Errorf("Disconnect(%d): %v, want ErrNoDevice", idx, err)
		}
		if _, err := kernel.Status(context.Background(), idx); !errors.Is(err, kernel.ErrNoDevice) {
			t.Errorf("Status(%d): %v, want ErrNoDevice", idx, err)
		}
	}
}
