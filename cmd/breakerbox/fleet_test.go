package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// TestThreeBinariesShareOneBreakerPerRegion runs three real breakerbox
// processes against one real Redis, as three replicas of a sidecar fleet.
// Failures spread over the three open the region's circuit in all of them;
// in HALF_OPEN one probe at a time reaches the upstream from the whole fleet;
// three successful probes close it everywhere.
func TestThreeBinariesShareOneBreakerPerRegion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	srv := redistest.Start(t)
	rdb := srv.Client()
	const circuit = "genesys/eu-west-1"
	hash := "breakerbox:{" + circuit + "}"

	var healthy atomic.Bool
	var inFlight, maxInFlight, probes atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if st, _ := rdb.HGet(r.Context(), hash, "st").Result(); st == "closed" {
			return // the fleet recovered: a normal call, not a probe
		}
		probes.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		time.Sleep(30 * time.Millisecond) // a probe holds its slot: others must wait
	}))
	defer upstream.Close()

	bin := buildBinary(t)
	type replica struct {
		proxy, admin string
		stderr       *syncbuf.Buffer
	}
	var replicas []replica
	for i := range 3 {
		r := replica{proxy: freeAddr(t), admin: freeAddr(t)}
		cfgPath := filepath.Join(t.TempDir(), fmt.Sprintf("replica-%d.yaml", i))
		// A generous Redis timeout: on a loaded machine a 100 ms round trip
		// would put a replica in degraded mode, where it probes on its own.
		cfg := fmt.Sprintf(`listen: %s
admin: %s
state: {url: %q, timeout: 5s}
services:
  - name: genesys
    per_region: {eu-west-1: %q}
    failure_threshold: 10
    open_timeout: 500ms
    half_open_successes: 3
    half_open_probes: 1
    timeout: 5s
`, r.proxy, r.admin, srv.URL(), upstream.URL)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", "--config", cfgPath)
		stdout, stderr := new(syncbuf.Buffer), new(syncbuf.Buffer)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		r.stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			if t.Failed() {
				t.Logf("replica %d:\n%s%s", i, stdout, stderr)
			}
		})
		replicas = append(replicas, r)
		waitFor(t, func() bool { return strings.Contains(stderr.String(), "shared by the fleet") })
	}
	state := func(r replica) string {
		resp, err := http.Get("http://" + r.admin + "/api/circuits/" + circuit)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var c proxy.Circuit
		json.NewDecoder(resp.Body).Decode(&c)
		return c.State
	}
	everywhere := func(want string) func() bool {
		return func() bool {
			for _, r := range replicas {
				if state(r) != want {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, everywhere("closed"))
	call := func(r replica) (int, string) {
		resp, err := http.Get("http://" + r.proxy + "/genesys/eu-west-1/api/v2/conversations")
		if err != nil {
			t.Fatalf("proxy %s: %v", r.proxy, err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Breakerbox-State")
	}

	// 4 + 3 + 3 failures: no replica sees 10.
	for i, n := range []int{4, 3, 3} {
		for range n {
			if code, _ := call(replicas[i]); code != http.StatusServiceUnavailable {
				t.Fatalf("failing call: status %d, want the upstream's 503", code)
			}
		}
	}
	waitFor(t, everywhere("open"))
	if code, st := call(replicas[2]); code != http.StatusServiceUnavailable || st != "open" {
		t.Fatalf("call while open: %d %q, want 503 from breakerbox itself", code, st)
	}
	// One ERROR fleet-wide, on the replica whose failure was the 10th; each
	// line names it, and the ERROR's evidence names the replicas. (A line is
	// written just after the state it logs is visible.)
	waitFor(t, func() bool {
		for _, r := range replicas {
			if !strings.Contains(r.stderr.String(), "Circuit breaker OPEN for region eu-west-1") {
				return false
			}
		}
		return true
	})
	errors := 0
	for i, r := range replicas {
		lines := grepLines(r.stderr.String(), "Circuit breaker OPEN for region eu-west-1")
		if strings.Count(lines, "\n") != 0 || !strings.Contains(lines, "decided_by=") {
			t.Fatalf("replica %d logs the opening as %q, want one line with decided_by", i, lines)
		}
		if strings.Contains(lines, "level=ERROR") {
			errors++
			if strings.Count(lines, ":503/") != 10 {
				t.Fatalf("the ERROR's evidence does not name a replica for each of the 10 failures: %s", lines)
			}
		}
	}
	if errors != 1 {
		t.Fatalf("the fleet's opening was logged at ERROR by %d replicas, want 1", errors)
	}

	// The upstream recovers; every replica keeps calling it from 2 clients.
	healthy.Store(true)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, r := range replicas {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil && state(r) != "closed" {
					req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+r.proxy+"/genesys/eu-west-1/x", nil)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
	}
	waitFor(t, everywhere("closed"))
	cancel()
	wg.Wait()
	if m := maxInFlight.Load(); m != 1 {
		t.Fatalf("%d probes reached the upstream at once from the fleet, want 1", m)
	}
	if p := probes.Load(); p != 3 {
		t.Fatalf("%d probes reached the upstream before the fleet closed, want 3", p)
	}
}

func TestCheckConfigNamesAnUnreachableRedis(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("state: 'redis://127.0.0.1:1/0'\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"), 0o644)
	var out bytes.Buffer
	err := run(context.Background(), []string{"check-config", path}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "state: redis://127.0.0.1:1/0: redisstate: Redis does not answer") {
		t.Fatalf("check-config with an unreachable Redis: %v", err)
	}

	srv := redistest.Start(t)
	os.WriteFile(path, []byte("state: '"+srv.URL()+"'\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"), 0o644)
	out.Reset()
	if err := run(context.Background(), []string{"check-config", path}, &out, &out); err != nil {
		t.Fatalf("check-config with a live Redis: %v", err)
	}
	if !strings.Contains(out.String(), "state "+srv.URL()) {
		t.Fatalf("check-config output %q does not name the state", out.String())
	}
}

func TestServeStartsDegradedWhenRedisIsUnreachable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	admin := freeAddr(t)
	os.WriteFile(path, []byte(fmt.Sprintf("listen: %s\nadmin: %s\nstate: 'redis://127.0.0.1:1/0'\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n",
		freeAddr(t), admin)), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := new(syncbuf.Buffer), new(syncbuf.Buffer)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, stdout, stderr) }()
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "state redis://127.0.0.1:1/0 UNREACHABLE") })
	if strings.Contains(stderr.String(), "shared by the fleet") {
		t.Fatalf("the banner claims a fleet it cannot reach:\n%s", stderr)
	}
	if !strings.Contains(stderr.String(), "DEGRADED at start") {
		t.Fatalf("no loud log of the degraded start:\n%s", stderr)
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^breakerbox_fleet_degraded\{replica="[^"]+"\} 1$`).Match(body) {
		t.Fatalf("/metrics does not say the replica is degraded:\n%s", grepLines(string(body), "breakerbox_fleet"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
