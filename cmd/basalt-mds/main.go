// Command basalt-mds runs Basalt's metadata server; see package mds and
// `basalt-mds --help` for its flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"basalt/mds"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "basalt-mds:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	return mds.RunDaemon(ctx, args, os.Stderr)
}
