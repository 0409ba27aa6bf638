package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// TestHelpOnEveryCommand: -h and --help print the command's usage on stdout
// and succeed; nothing is run (check-config does not open a file named -h,
// serve does not start).
func TestHelpOnEveryCommand(t *testing.T) {
	cases := map[string]string{
		"":             "breakerbox check-config FILE", // the command list
		"serve":        "-config string",
		"check-config": "usage: breakerbox check-config FILE",
		"status":       "-fail-if-open",
		"open":         "BREAKERBOX_ADMIN_TOKEN",
		"close":        "usage: breakerbox close CIRCUIT",
		"reset":        "usage: breakerbox reset CIRCUIT",
		"demo":         "-outage duration",
		"version":      "usage: breakerbox version",
	}
	for cmd, want := range cases {
		for _, flag := range []string{"-h", "--help"} {
			args := []string{flag}
			if cmd != "" {
				args = []string{cmd, flag}
			}
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), args, &stdout, &stderr); err != nil {
				t.Errorf("%v: %v", args, err)
			}
			if !strings.Contains(stdout.String(), want) || stderr.Len() > 0 {
				t.Errorf("%v: stdout lacks %q:\n%s\nstderr:\n%s", args, want, stdout.String(), stderr.String())
			}
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help", "status"}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "-watch") {
		t.Errorf("help status: %v\n%s", err, out.String())
	}
}

// TestBinaryHelpExitsZero runs the real binary: `breakerbox -h` exits 0
// with the usage on stdout (it went through serve's flags and exited 2).
func TestBinaryHelpExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	for _, args := range [][]string{{"-h"}, {"check-config", "-h"}, {"status", "--help"}, {"version"}} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stdout.Len() == 0 || stderr.Len() > 0 {
			t.Errorf("%v: %v; stdout %q; stderr %q", args, err, stdout.String(), stderr.String())
		}
	}
	err := exec.Command(bin, "status", "--bogus").Run()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("a bad flag: %v, want exit 2", err)
	}
}

// sidecar serves a config with one failing circuit (bad, threshold 2) and
// two healthy ones, with an admin token; it returns the admin address and
// a function that sends n requests to a circuit.
func sidecar(t *testing.T) (admin string, send func(circuit string, n int)) {
	t.Helper()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	t.Cleanup(failing.Close)
	ok := okUpstream(t)
	r := startServers(t, fmt.Sprintf("admin_token: %s\nservices:\n"+
		"  - {name: bad, upstream: %q, failure_threshold: 2}\n"+
		"  - {name: good, upstream: %q}\n"+
		"  - {name: genesys, per_region: {eu-west-1: %q}}\n", testToken, failing.URL, ok.URL, ok.URL))
	return r.admin, func(circuit string, n int) {
		for range n {
			get(t, "http://"+r.proxy+"/"+circuit+"/x")
		}
	}
}

const testToken = "test-admin-token-0123456789"

func status(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), append([]string{"status"}, args...), &out, io.Discard)
	return out.String(), err
}

func TestStatusJSONAndStateFilter(t *testing.T) {
	admin, send := sidecar(t)
	send("bad", 2) // opens it
	send("good", 3)

	out, err := status(t, "--admin", admin, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var all []proxy.Circuit
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(all) != 3 || all[0].Name != "bad" || all[0].State != "open" || all[0].Counts["failure"] != 2 {
		t.Fatalf("--json, problems first: %+v", all)
	}

	out, err = status(t, "--admin", admin, "--json", "--state", "open")
	var open []proxy.Circuit
	json.Unmarshal([]byte(out), &open)
	if err != nil || len(open) != 1 || open[0].Name != "bad" {
		t.Fatalf("--state open: %v %s", err, out)
	}
	out, err = status(t, "--admin", admin, "--state", "closed,half_open")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if err != nil || len(lines) != 3 || !strings.HasPrefix(lines[1], "genesys/eu-west-1 ") || !strings.HasPrefix(lines[2], "good ") {
		t.Fatalf("--state closed,half_open: %v\n%s", err, out)
	}
	if out, _ := status(t, "--admin", admin, "--state", "open"); !regexp.MustCompile(`\nbad +open +- +0 +2 `).MatchString(out) {
		t.Fatalf("an open circuit shows a failure streak (it was 0/2 before):\n%s", out)
	}
	out, err = status(t, "--admin", admin, "--json", "--state", "forced_open")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("no circuit in the state: %v %q, want []", err, out)
	}
	for _, bad := range [][]string{{"--state", "opened"}, {"--interval", "0s"}, {"extra"}} {
		if _, err := status(t, append([]string{"--admin", admin}, bad...)...); exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
}

func TestStatusFailIfOpen(t *testing.T) {
	admin, send := sidecar(t)
	if _, err := status(t, "--admin", admin, "--fail-if-open"); err != nil {
		t.Fatalf("all closed: %v", err)
	}
	send("bad", 2)
	out, err := status(t, "--admin", admin, "--fail-if-open")
	if exitCode(err) != 3 || !strings.Contains(err.Error(), "1 circuits not closed: bad") || !strings.Contains(out, "bad ") {
		t.Fatalf("with bad open: %v (exit %d)\n%s", err, exitCode(err), out)
	}
	if _, err := status(t, "--admin", admin, "--fail-if-open", "--state", "closed"); err != nil {
		t.Fatalf("only closed circuits shown: %v", err)
	}
}

// TestStatusWatch prints frames until interrupted, shows a circuit's change
// from one frame to the next, and with --fail-if-open stops at the frame
// where a circuit opened.
func TestStatusWatch(t *testing.T) {
	admin, send := sidecar(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"status", "--admin", admin, "--watch", "--interval", "10ms", "--state", "open"}, &out, io.Discard)
	}()
	frames := func() int { return strings.Count(out.String(), "(Ctrl-C to stop)") }
	waitFor(t, func() bool { return frames() >= 2 })
	if strings.Contains(out.String(), "bad ") {
		t.Fatalf("bad shown open before it opened:\n%s", out.String())
	}
	send("bad", 2)
	waitFor(t, func() bool { return regexp.MustCompile(`\nbad +open `).MatchString(out.String()) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("--watch interrupted: %v, want a clean exit", err)
	}

	err := run(context.Background(), []string{"status", "--admin", admin, "--watch", "--interval", "10ms", "--fail-if-open"}, io.Discard, io.Discard)
	if exitCode(err) != 3 {
		t.Fatalf("--watch --fail-if-open with bad open: %v, want exit 3", err)
	}
}

func control(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out, io.Discard)
	return out.String(), err
}

// TestOpenCloseReset drives the admin API from the command line with the
// token from BREAKERBOX_ADMIN_TOKEN.
func TestOpenCloseReset(t *testing.T) {
	admin, _ := sidecar(t)
	t.Setenv("BREAKERBOX_ADMIN_TOKEN", "")
	if _, err := control(t, "open", "good", "--admin", admin); err == nil || !strings.Contains(err.Error(), "set BREAKERBOX_ADMIN_TOKEN") {
		t.Fatalf("without a token: %v", err)
	}
	t.Setenv("BREAKERBOX_ADMIN_TOKEN", testToken)
	for _, step := range []struct{ action, circuit, want string }{
		{"open", "good", "good: forced_open\n"},
		{"close", "genesys/eu-west-1", "genesys/eu-west-1: disabled\n"},
		{"reset", "good", "good: closed\n"},
	} {
		out, err := control(t, step.action, "--admin", admin, step.circuit) // flags before or after the circuit
		if err != nil || out != step.want {
			t.Fatalf("%s %s: %v %q, want %q", step.action, step.circuit, err, out, step.want)
		}
	}
	if out, _ := status(t, "--admin", admin, "--state", "disabled"); !strings.Contains(out, "genesys/eu-west-1 ") {
		t.Fatalf("status after close:\n%s", out)
	}
	if _, err := control(t, "open", "nope", "--admin", admin); err == nil || !strings.Contains(err.Error(), `no circuit "nope"; circuits: bad, genesys/eu-west-1, good`) {
		t.Fatalf("unknown circuit: %v", err)
	}
	if _, err := control(t, "reset", "--admin", admin); exitCode(err) != 2 {
		t.Fatalf("no circuit: %v, want a usage error", err)
	}
	t.Setenv("BREAKERBOX_ADMIN_TOKEN", "wrong-token-0123456789")
	if _, err := control(t, "open", "good", "--admin", admin); err == nil || !strings.Contains(err.Error(), "refused the token") {
		t.Fatalf("a wrong token: %v", err)
	}
}

// TestCheckConfigHelpAndDashDash: -h is help, and a file named -h is still
// reachable after --.
func TestCheckConfigHelpAndDashDash(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "-h"), []byte("services: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"), 0o644)
	t.Chdir(dir)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config", "--", "-h"}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "-h: ok: 1 services") {
		t.Fatalf("check-config -- -h: %v %q", err, out.String())
	}
}
