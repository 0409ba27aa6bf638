package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
	"github.com/breakerbox/breakerbox/redisstate"
)

// fleetReplica is one sidecar of a fleet: its Server, shared by a
// redisstate.Fleet on the test's Redis, and its log.
type fleetReplica struct {
	name         string
	srv          *proxy.Server
	fleet        *redisstate.Fleet
	front, admin string
	logs         *syncbuf.Buffer
}

func startFleetReplica(t *testing.T, rs *redistest.Server, name, upstream string) *fleetReplica {
	t.Helper()
	cfg, err := config.Parse("fleet.yaml", []byte(fmt.Sprintf(`
services:
  - name: genesys
    per_region: {eu-west-1: '%s'}
    failure_threshold: 10
    open_timeout: 100ms
    half_open_successes: 3
    half_open_probes: 1
`, upstream)))
	if err != nil {
		t.Fatal(err)
	}
	r := &fleetReplica{name: name, logs: &syncbuf.Buffer{}}
	var srv atomic.Pointer[proxy.Server]
	r.fleet, err = redisstate.New(context.Background(), redisstate.Options{URL: rs.URL(), Replica: name,
		Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
		Describe: func(c string) string {
			if s := srv.Load(); s != nil {
				return s.DescribeFailure(c)
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.fleet.Close() })
	r.srv, err = proxy.New(cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(r.logs, nil)), Replica: name, Sync: r.fleet})
	if err != nil {
		t.Fatal(err)
	}
	srv.Store(r.srv)
	r.front, r.admin = httptestServer(t, r.srv).URL, httptestServer(t, r.srv.Admin()).URL
	waitUntil(t, func() bool { return !r.fleet.Stats().Degraded }, name+" joins the fleet")
	return r
}

func (r *fleetReplica) call(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(r.front + "/genesys/eu-west-1/api/v2/conversations")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (r *fleetReplica) state() string {
	for _, c := range r.srv.Circuits() {
		if c.Name == "genesys/eu-west-1" {
			return c.State
		}
	}
	return ""
}

// lines returns the replica's log lines that contain every one of subs.
func (r *fleetReplica) lines(subs ...string) []string {
	var out []string
next:
	for _, l := range strings.Split(r.logs.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) { // a hang guard only: the fleet converges in milliseconds
			t.Fatalf("timed out waiting for: %s", what)
		}
	}
}

// TestAFleetTransitionIsOneErrorFleetWideWithTheEvidenceOfEveryReplica runs
// three sidecars on one real Redis. The fleet's opening is logged at ERROR
// by the replica whose failure reached the threshold, at INFO by the other
// two, each line saying decided_by; the ERROR's evidence and every
// replica's /api/transitions name the replica of each failure. The
// recovery is logged once per replica with the same decider.
func TestAFleetTransitionIsOneErrorFleetWideWithTheEvidenceOfEveryReplica(t *testing.T) {
	rs := redistest.Start(t)
	up := newUpstream(t)
	var f []*fleetReplica
	for i := range 3 {
		f = append(f, startFleetReplica(t, rs, fmt.Sprintf("replica-%d", i+1), up.URL))
	}
	hash := "breakerbox:{genesys/eu-west-1}"
	up.status.Store(503)
	// 4 + 3 on replicas 1 and 2, counted by Redis; replica-3's 3 make 10.
	for i, n := range []int{4, 3} {
		for range n {
			if code := f[i].call(t); code != 503 {
				t.Fatalf("failing call: %d, want the upstream's 503", code)
			}
		}
	}
	waitUntil(t, func() bool { return rs.Client().HGet(context.Background(), hash, "fl").Val() == "7" }, "Redis counts 7 failures")
	for range 3 {
		f[2].call(t)
	}
	everywhere := func(state string) func() bool {
		return func() bool {
			for _, r := range f {
				if r.state() != state {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, everywhere("open"), "the fleet opens on every replica")
	logged := func(sub string) func() bool { // a line is written just after the state it logs is visible
		return func() bool {
			for _, r := range f {
				if len(r.lines(sub)) == 0 {
					return false
				}
			}
			return true
		}
	}
	waitUntil(t, logged("Circuit breaker OPEN for region eu-west-1"), "every replica logs the opening")

	errors, infos := 0, 0
	for _, r := range f {
		lines := r.lines("Circuit breaker OPEN for region eu-west-1")
		if len(lines) != 1 || !strings.Contains(lines[0], "decided_by=replica-3") {
			t.Fatalf("%s logs the opening as %q, want one line with decided_by=replica-3", r.name, lines)
		}
		switch {
		case strings.Contains(lines[0], "level=ERROR"):
			errors++
			if r.name != "replica-3" {
				t.Fatalf("%s logs the opening at ERROR; only replica-3, which decided it, should: %s", r.name, lines[0])
			}
			for _, want := range []string{"replica-1:503/", "replica-2:503/", "replica-3:503/"} {
				if !strings.Contains(lines[0], want) {
					t.Fatalf("the ERROR's evidence does not show %q: %s", want, lines[0])
				}
			}
		case strings.Contains(lines[0], "level=INFO"):
			infos++
		}
	}
	if errors != 1 || infos != 2 {
		t.Fatalf("opening logged at ERROR %d times and INFO %d times fleet-wide, want 1 and 2", errors, infos)
	}
	for _, r := range f {
		var list []proxy.TransitionJSON
		getJSON(t, r.admin+"/api/transitions?circuit=genesys/eu-west-1", &list)
		if len(list) != 1 || list[0].DecidedBy != "replica-3" || list[0].Replica != r.name || len(list[0].Evidence) != 10 {
			t.Fatalf("%s: /api/transitions = %+v, want its opening, decided by replica-3, with the fleet's 10 failures", r.name, list)
		}
		seen := map[string]int{}
		for _, o := range list[0].Evidence {
			if o.Status != 503 || o.At.IsZero() {
				t.Fatalf("%s: evidence %+v, want 503s with their time", r.name, o)
			}
			seen[o.Replica]++
		}
		if seen["replica-1"] != 4 || seen["replica-2"] != 3 || seen["replica-3"] != 3 {
			t.Fatalf("%s: evidence by replica %v, want 4, 3 and 3", r.name, seen)
		}
	}

	// Recovery: calls through replica-1 until the fleet closes. Its own
	// count waits for the fleet's (breaker.DecideSync): exactly 3 probes.
	up.status.Store(200)
	hits := up.hits.Load()
	waitUntil(t, func() bool { return f[0].state() == "half_open" }, "replica-1 half-open")
	waitUntil(t, func() bool {
		f[0].call(t)
		return everywhere("closed")()
	}, "3 probes close the fleet")
	waitUntil(t, logged("Circuit breaker CLOSED for region eu-west-1"), "every replica logs the recovery")
	if n := up.hits.Load() - hits; n < 3 {
		t.Fatalf("%d calls reached the upstream, want the 3 probes at least", n)
	}
	for _, r := range f {
		lines := r.lines("Circuit breaker CLOSED for region eu-west-1")
		if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "decided_by=replica-1") {
			t.Fatalf("%s logs the recovery as %q, want one INFO line decided by replica-1, whose probes closed it", r.name, lines)
		}
	}
}
