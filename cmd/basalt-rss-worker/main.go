// Command basalt-rss-worker runs a remote shuffle service worker; see
// package basalt/rss/worker and `basalt-rss-worker --help` for its flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"basalt/rss/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts the graceful shutdown, which may wait for
	// --shutdown-deadline; a second one kills the process at once.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "basalt-rss-worker:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	return worker.RunDaemon(ctx, args, os.Stderr)
}
