package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// TestBinarySIGHUPKeepsCircuitState runs the real binary: a SIGHUP that
// changes every circuit's settings leaves an OPEN circuit OPEN with its
// deadline, a forced-open one forced, and a failure streak counted; each
// change is logged, and no transition is recorded.
func TestBinarySIGHUPKeepsCircuitState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }))
	defer down.Close()
	const token = "reload-test-token-0123"
	listen, admin := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "breakerbox.yaml")
	write := func(openTimeout string, threshold int) {
		body := fmt.Sprintf(`listen: %s
admin: %s
admin_token: %s
defaults: {open_timeout: %s, failure_threshold: %d}
services:
  - {name: tripped, upstream: %q, failure_threshold: 1}
  - {name: forced, upstream: %q}
  - {name: streak, upstream: %q}
`, listen, admin, token, openTimeout, threshold, down.URL, down.URL, down.URL)
		if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("10m", 5)
	stderr := new(syncbuf.Buffer)
	cmd := exec.Command(buildBinary(t), "serve", "--config", cfgPath)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	circuits := func() map[string]proxy.Circuit {
		out := map[string]proxy.Circuit{}
		resp, err := http.Get("http://" + admin + "/api/circuits")
		if err != nil {
			return out
		}
		defer resp.Body.Close()
		var cs []proxy.Circuit
		json.NewDecoder(resp.Body).Decode(&cs)
		for _, c := range cs {
			out[c.Name] = c
		}
		return out
	}
	waitFor(t, func() bool { return len(circuits()) == 3 })
	call := func(path string) {
		resp, err := http.Get("http://" + listen + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	call("/tripped/x")
	call("/streak/x")
	call("/streak/x")
	req, _ := http.NewRequest("POST", "http://"+admin+"/api/circuits/forced/open", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("force open: %v %v", resp, err)
	}
	before := circuits()
	if before["tripped"].State != "open" || before["forced"].State != "forced_open" || before["streak"].ConsecutiveFailures != 2 {
		t.Fatalf("before reload: %+v", before)
	}

	write("30s", 3) // every circuit's settings change
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "config reloaded") })
	after := circuits()
	tr, fo, st := after["tripped"], after["forced"], after["streak"]
	if tr.State != "open" || tr.RetryAfterSeconds <= 30 || tr.Settings.OpenTimeout != 30 {
		t.Errorf("tripped: %s, probe in %vs, open timeout %vs: want open until its 10m deadline", tr.State, tr.RetryAfterSeconds, tr.Settings.OpenTimeout)
	}
	if fo.State != "forced_open" || fo.Settings.FailureThreshold != 3 {
		t.Errorf("forced: %s threshold %d, want forced_open with the new threshold", fo.State, fo.Settings.FailureThreshold)
	}
	if st.State != "closed" || st.ConsecutiveFailures != 2 || st.Counts["failure"] != 2 {
		t.Errorf("streak: %s, streak %d, failures %d: want closed with its 2 failures", st.State, st.ConsecutiveFailures, st.Counts["failure"])
	}
	for _, c := range []proxy.Circuit{tr, fo} {
		if c.LastTransition == nil || !reflect.DeepEqual(c.LastTransition, before[c.Name].LastTransition) {
			t.Errorf("%s: last transition %+v, was %+v: a reload is no transition", c.Name, c.LastTransition, before[c.Name].LastTransition)
		}
	}
	if n := strings.Count(stderr.String(), "circuit reconfigured by reload, state kept"); n != 3 ||
		!strings.Contains(stderr.String(), "circuit=tripped state=open changed=\"open_timeout 10m0s→30s\"") {
		t.Errorf("%d reconfiguration lines:\n%s", n, stderr)
	}
	call("/streak/x") // the third failure reaches the new threshold of 3
	if s := circuits()["streak"]; s.State != "open" {
		t.Errorf("streak after a third failure: %s, want open (threshold 3)", s.State)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr)
	}
}
