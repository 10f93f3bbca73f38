// Command pushctl is the operator's tool for a Pushlane deployment: apply
// the database migrations, create and check the topics, publish, cancel,
// pause and resume campaigns, inspect and re-drive dead letters, replay a
// topic range through a consumer group, and validate event files offline.
//
// Run `pushctl help` for the commands and their exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &cli{
		stdin:   os.Stdin,
		stdout:  os.Stdout,
		stderr:  os.Stderr,
		environ: os.Environ(),
		now:     time.Now,
	}, os.Args[1:])
	stop()
	os.Exit(code)
}
