// Command breakerbox is a sidecar egress proxy with a circuit breaker per
// external service (and per region): point a client's base URL at
// http://127.0.0.1:7070/<service>/ and its calls fail fast while the service
// is down. The admin listener serves a live dashboard, /metrics and a JSON API.
//
//	breakerbox [serve] [--config FILE]   run (the embedded default config without --config)
//	breakerbox check-config FILE         validate a config file
//	breakerbox status [--admin ADDR]     print the circuits as a table
//	breakerbox demo                      a one-minute tour on local fake upstreams
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  breakerbox [serve] [--config FILE] [--grace 10s]   run the proxy (embedded default config without --config)
  breakerbox check-config FILE                       validate a config file
  breakerbox status [--admin 127.0.0.1:7071]         print the circuits as a table
  breakerbox demo                                    watch circuits open, probe and close on local fake upstreams
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "breakerbox:", err)
		os.Exit(exitCode(err))
	}
}

// usageError is an error in the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg + "\n" + usage }

func exitCode(err error) int {
	if _, ok := err.(usageError); ok {
		return 2
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCmd(ctx, args, stdout, stderr)
	case "check-config":
		return checkConfigCmd(args, stdout)
	case "status":
		return statusCmd(ctx, args, stdout)
	case "demo":
		return demoCmd(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}
