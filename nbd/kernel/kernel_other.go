//go:build !linux

package kernel

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// errUnsupported is what every operation returns off Linux.
var errUnsupported = fmt.Errorf("nbd/kernel: the kernel nbd driver exists only on Linux, not %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Connect is only supported on Linux; elsewhere it returns an error
// wrapping errors.ErrUnsupported.
func Connect(context.Context, ConnectOptions) (int, error) { return 0, errUnsupported }

// Probe reports that this OS has no nbd driver.
func Probe(context.Context) error { return errUnsupported }

// Disconnect is only supported on Linux; elsewhere it returns an error
// wrapping errors.ErrUnsupported.
func Disconnect(context.Context, int) error { return errUnsupported }

// Status is only supported on Linux; elsewhere it returns an error
// wrapping errors.ErrUnsupported.
func Status(context.Context, int) (Device, error) { return Device{}, errUnsupported }

// List is only supported on Linux; elsewhere it returns an error wrapping
// errors.ErrUnsupported.
func List(context.Context) ([]Device, error) { return nil, errUnsupported }
