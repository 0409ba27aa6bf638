// Command breakerbox is a sidecar egress proxy with a circuit breaker per
// external service (and per region): point a client's base URL at
// http://127.0.0.1:7070/<service>/ and its calls fail fast while the service
// is down. The admin listener serves a live dashboard, /metrics, a JSON API,
// and /healthz and /readyz.
//
//	breakerbox [serve] [--config FILE]          run (the embedded default config without --config)
//	breakerbox check-config FILE                validate a config file
//	breakerbox status [--json] [--state S] ...  print the circuits
//	breakerbox open|close|reset CIRCUIT         force a circuit (token in BREAKERBOX_ADMIN_TOKEN)
//	breakerbox demo                             a one-minute tour on local fake upstreams
//	breakerbox version                          print the version
//
// Every command takes -h or --help.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  breakerbox [serve] [--config FILE] [--grace 10s]   run the proxy (embedded default config without --config)
        [--log-format text|json] [--log-level info]  (env BREAKERBOX_LOG_FORMAT, BREAKERBOX_LOG_LEVEL)
  breakerbox check-config FILE                       validate a config file
  breakerbox status [--admin 127.0.0.1:7071] [--json] [--state open,half_open] [--watch] [--fail-if-open]
                                                     print the circuits
  breakerbox open|close|reset CIRCUIT [--admin ADDR] force a circuit open or closed, or reset it
                                                     (the admin token from BREAKERBOX_ADMIN_TOKEN)
  breakerbox demo                                    watch circuits open, probe and close on local fake upstreams
  breakerbox version                                 print the version, VCS revision and Go version
  breakerbox COMMAND -h                              a command's flags
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
	var open openCircuitsError
	switch {
	case errors.As(err, &usageError{}):
		return 2
	case errors.As(err, &open):
		return 3
	}
	return 1
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 { // no command: serve, unless breakerbox's own flags
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return nil
		case "-version", "--version":
			cmd, args = "version", args[1:]
		}
	}
	err := command(ctx, cmd, args, stdout, stderr)
	if errors.Is(err, errHelp) { // the help asked for is printed
		return nil
	}
	return err
}

func command(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) error {
	switch cmd {
	case "serve":
		return serveCmd(ctx, args, stdout, stderr)
	case "check-config":
		return checkConfigCmd(args, stdout)
	case "status":
		return statusCmd(ctx, args, stdout)
	case "open", "close", "reset":
		return controlCmd(ctx, cmd, args, stdout)
	case "demo":
		return demoCmd(ctx, args, stdout, stderr)
	case "version":
		return versionCmd(args, stdout)
	case "help":
		if len(args) == 1 && args[0] != "help" { // breakerbox help status
			return command(ctx, args[0], []string{"-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}
