package proxy_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// logged is a fixture whose server logs JSON at DEBUG into a buffer.
type logged struct {
	*fixture
	buf *syncbuf.Buffer
}

func newLoggedFixture(t *testing.T, yaml string) *logged {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	buf := new(syncbuf.Buffer)
	f := &fixture{t: t, clk: breakertest.NewClock()}
	log := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if f.srv, err = proxy.New(cfg, proxy.Options{Clock: f.clk, Logger: log}); err != nil {
		t.Fatal(err)
	}
	f.proxy = startProxy(t, f.srv, config.EngineNetHTTP)
	f.admin = httptest.NewServer(f.srv.Admin())
	t.Cleanup(f.admin.Close)
	return &logged{f, buf}
}

// lines are the log records whose message starts with prefix.
func (l *logged) lines(prefix string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			l.t.Fatalf("not JSON: %q", line)
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, m)
		}
	}
	return out
}

func levels(records []map[string]any) string {
	var ls []string
	for _, r := range records {
		ls = append(ls, r["level"].(string))
	}
	return strings.Join(ls, " ")
}

// TestAnOutageIsOneErrorThenPeriodicWarnings: the circuit opens (ERROR),
// fails seven probes a minute apart (WARN at the first and five minutes
// later, DEBUG otherwise, HALF_OPEN at DEBUG), and recovers (INFO, with how
// long it was down). Every line says circuit, never breaker.
func TestAnOutageIsOneErrorThenPeriodicWarnings(t *testing.T) {
	up := newUpstream(t)
	up.status.Store(500)
	l := newLoggedFixture(t, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 2, open_timeout: 1m, half_open_successes: 1}]", up.URL))
	l.status("/svc/x")
	l.status("/svc/x")
	for range 7 {
		l.clk.Advance(time.Minute)
		if code := l.status("/svc/x"); code != 500 {
			t.Fatalf("probe: %d, want the upstream's 500", code)
		}
	}
	up.status.Store(200)
	l.clk.Advance(time.Minute)
	if code := l.status("/svc/x"); code != 200 {
		t.Fatalf("last probe: %d", code)
	}

	if got := levels(l.lines("Circuit breaker OPEN for svc after 2 failures")); got != "ERROR" {
		t.Errorf("opening: %q, want one ERROR", got)
	}
	still := l.lines("Circuit breaker still OPEN for svc")
	if got := levels(still); got != "WARN WARN" {
		t.Fatalf("failed probes: %q, want WARN at the first and five minutes later", got)
	}
	if !strings.Contains(still[1]["msg"].(string), "after 6 failed probes, down 6m0s") || still[1]["failed_probes"] != 6.0 || still[1]["down"] == nil {
		t.Errorf("second still-open line: %v", still[1])
	}
	if got := levels(l.lines("Circuit breaker OPEN for svc again")); got != "DEBUG DEBUG DEBUG DEBUG DEBUG" {
		t.Errorf("other failed probes: %q, want 5 DEBUG", got)
	}
	if got := levels(l.lines("Circuit breaker HALF_OPEN for svc")); got != strings.TrimSpace(strings.Repeat("DEBUG ", 8)) {
		t.Errorf("half-open: %q, want 8 DEBUG", got)
	}
	closed := l.lines("Circuit breaker CLOSED for svc — recovered after 8m0s down, 7 failed probes")
	if levels(closed) != "INFO" {
		t.Errorf("recovery: %q, want one INFO:\n%s", levels(closed), l.buf)
	}
	for _, r := range l.lines("Circuit breaker") {
		if r["circuit"] != "svc" || r["service"] != "svc" || r["breaker"] != nil {
			t.Errorf("want circuit=svc service=svc and no breaker key: %v", r)
		}
	}
}

// TestRegionCircuitsAreLoggedInT10sWords: "Circuit breaker OPEN for region
// eu-west-1 after 10 failures", and CLOSED "— recovered", with the
// circuit, service and region as attributes.
func TestRegionCircuitsAreLoggedInT10sWords(t *testing.T) {
	up := newUpstream(t)
	up.status.Store(503)
	l := newLoggedFixture(t, fmt.Sprintf("services: [{name: genesys, per_region: {eu-west-1: %q}, failure_threshold: 10, half_open_successes: 1}]", up.URL))
	for range 10 {
		l.status("/genesys/eu-west-1/x")
	}
	up.status.Store(200)
	l.clk.Advance(time.Minute)
	l.status("/genesys/eu-west-1/x")
	for msg, level := range map[string]string{
		"Circuit breaker OPEN for region eu-west-1 after 10 failures":   "ERROR",
		"Circuit breaker CLOSED for region eu-west-1 — recovered after": "INFO",
	} {
		rs := l.lines(msg)
		if levels(rs) != level {
			t.Fatalf("%q: %q, want one %s:\n%s", msg, levels(rs), level, l.buf)
		}
		if r := rs[0]; r["circuit"] != "genesys/eu-west-1" || r["service"] != "genesys" || r["region"] != "eu-west-1" {
			t.Errorf("attributes: %v", r)
		}
	}
}

// TestUpstreamFaultsAreLoggedAtMostOncePerPeriod: 5xx answers and refused
// connections get a WARN line each per circuit and period, saying how many
// went unlogged in between.
func TestUpstreamFaultsAreLoggedAtMostOncePerPeriod(t *testing.T) {
	up := newUpstream(t)
	up.status.Store(502)
	l := newLoggedFixture(t, fmt.Sprintf("services:\n  - {name: svc, upstream: %q, failure_threshold: 100}\n  - {name: gone, upstream: 'http://127.0.0.1:1', failure_threshold: 100}\n", up.URL))
	for range 5 {
		l.status("/svc/x")
		l.status("/gone/x")
	}
	l.clk.Advance(10 * time.Second)
	l.status("/svc/x")
	l.status("/gone/x")
	for kind, circuit := range map[string]string{"upstream answered 5xx": "svc", "upstream unreachable": "gone"} {
		rs := l.lines(kind)
		if levels(rs) != "WARN WARN" {
			t.Fatalf("%s: %q, want 2 WARN:\n%s", kind, levels(rs), l.buf)
		}
		if rs[0]["circuit"] != circuit || rs[0]["unlogged_before"] != 0.0 || rs[1]["unlogged_before"] != 4.0 {
			t.Errorf("%s: %v / %v", kind, rs[0], rs[1])
		}
	}
	if rs := l.lines("upstream answered 5xx"); rs[0]["status"] != 502.0 {
		t.Errorf("5xx line without its status: %v", rs[0])
	}
}
