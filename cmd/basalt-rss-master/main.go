// Command basalt-rss-master runs the remote shuffle service's master; see
// package master and `basalt-rss-master --help` for its flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"basalt/rss/master"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "basalt-rss-master:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	return master.RunDaemon(ctx, args, os.Stderr)
}
