package attach

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"basalt/nbd/kernel"
)

// ErrNotMapped is returned by Detach when no device maps the volume or the
// device is not a connected Basalt device.
var ErrNotMapped = errors.New("attach: not mapped")

// Detach disconnects the device named by target (/dev/nbdN, or a volume
// name, which must be mapped) and waits until the process serving it has
// exited, so the volume's writer lease is released when it returns.
func Detach(ctx context.Context, target string) (Mapping, error) {
	m, err := find(ctx, target)
	if err != nil {
		return Mapping{}, err
	}
	index, err := ParseDevice(m.Device)
	if err != nil {
		return m, err
	}
	if err := kernel.Disconnect(ctx, index); err != nil {
		return m, fmt.Errorf("disconnecting %s: %w", m.Device, err)
	}
	return m, waitExit(ctx, m.PID)
}

// find resolves target to a connected Basalt mapping.
func find(ctx context.Context, target string) (Mapping, error) {
	ms, err := List(ctx)
	if err != nil {
		return Mapping{}, err
	}
	for _, m := range ms {
		if m.Device == target || m.Volume == target {
			return m, nil
		}
	}
	return Mapping{}, fmt.Errorf("%w: no Basalt device is %s or maps it", ErrNotMapped, target)
}

// ParseDevice returns the N of a /dev/nbdN path.
func ParseDevice(path string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(path, "/dev/nbd"))
	if err != nil || !strings.HasPrefix(path, "/dev/nbd") || n < 0 {
		return 0, fmt.Errorf("%w: %q is not /dev/nbdN", ErrNotMapped, path)
	}
	return n, nil
}

// waitExit waits until process pid has exited (it is not our child, so it
// is polled), or ctx ends.
func waitExit(ctx context.Context, pid int) error {
	if pid <= 0 {
		return nil
	}
	for {
		if exited(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the attach process %d to exit: %w", pid, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exited reports whether process pid is gone or a zombie (its parent, when
// that is a shell running as PID 1, may never reap it).
func exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
