// Command basalt-chunkserver runs a Basalt chunkserver; see package
// chunkserver and `basalt-chunkserver --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"basalt/chunkserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := chunkserver.RunDaemon(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "basalt-chunkserver:", err)
		stop()
		os.Exit(1)
	}
}
