// Command tandem keeps tables in several PostgreSQL databases in step, in
// both directions. See README.md and `tandem help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tandem-sync/tandem/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.LookupEnv})
	stop()
	os.Exit(code)
}
