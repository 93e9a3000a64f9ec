// Command basalt-nbd exports Basalt volumes over NBD (TCP and a unix
// socket); see package nbd/gateway and `basalt-nbd --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"basalt/nbd/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gateway.RunDaemon(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "basalt-nbd:", err)
		stop()
		os.Exit(1)
	}
}
