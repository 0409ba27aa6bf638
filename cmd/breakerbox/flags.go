package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// synopsis is each command's usage line and what it does, for its -h.
var synopsis = map[string]string{
	"serve": "breakerbox [serve] [flags]\n\nRun the proxy and the admin listener (the embedded default config without --config).\n" +
		"SIGHUP reloads the config file; SIGTERM drains in-flight requests and exits.",
	"check-config": "breakerbox check-config FILE\n\nValidate a config file, and check that its Redis answers and its listeners can be bound.",
	"status": "breakerbox status [flags]\n\nPrint the circuits of a running breakerbox, problems first.\n" +
		"Exit status: 0, 1 on error, 3 with --fail-if-open while a circuit shown is open, half_open or forced_open.",
	"open":    "breakerbox open CIRCUIT [flags]\n\nForce CIRCUIT open: every call is rejected until close or reset.\n" + tokenNote,
	"close":   "breakerbox close CIRCUIT [flags]\n\nForce CIRCUIT closed: every call goes through, failures are not counted, until open or reset.\n" + tokenNote,
	"reset":   "breakerbox reset CIRCUIT [flags]\n\nReturn CIRCUIT to closed with its counts cleared, ending a forced state.\n" + tokenNote,
	"demo":    "breakerbox demo [flags]\n\nWatch circuits open, probe and close on local fake upstreams; it stops by itself.",
	"version": "breakerbox version\n\nPrint the version, the VCS revision and the Go version it was built with.",
}

const tokenNote = "The admin token (admin_token in the config) is read from the environment variable BREAKERBOX_ADMIN_TOKEN."

// errHelp says a command's -h was answered: run exits 0.
var errHelp = errors.New("help printed")

// flags is a command's flag set. Its -h and --help print the command's
// usage to help (stdout); a bad flag is returned as a usageError, never
// printed here.
type flags struct {
	*flag.FlagSet
	help io.Writer
}

func newFlags(name string, help io.Writer) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{fs, help}
}

// parseFlags parses a command's flags; no other argument is allowed.
func parseFlags(fs *flags, args []string) error {
	rest, err := parseArgs(fs, args)
	if err == nil && len(rest) > 0 {
		err = usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), rest[0])}
	}
	return err
}

// parseArgs parses a command's flags and returns its other arguments. The
// flags may come before or after them (open CIRCUIT --admin ADDR); all
// after "--" are arguments.
func parseArgs(fs *flags, args []string) ([]string, error) {
	var rest []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.printHelp()
			return nil, errHelp
		}
		if err != nil {
			return nil, usageError{fs.Name() + ": " + err.Error()}
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if len(args) > len(left) && args[len(args)-len(left)-1] == "--" {
			return append(rest, left...), nil
		}
		rest, args = append(rest, left[0]), left[1:]
	}
}

func (fs *flags) printHelp() {
	fmt.Fprintf(fs.help, "usage: %s\n", synopsis[fs.Name()])
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if b.Len() > 0 {
		fmt.Fprintf(fs.help, "\nflags:\n%s", b.String())
	}
}
