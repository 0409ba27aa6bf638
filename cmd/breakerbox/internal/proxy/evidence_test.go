package proxy_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// TestOpenCarriesItsEvidence drives a circuit open through the proxy and
// finds the failures that opened it in the transition (API), on the
// circuit, and in the transition's log line; the rolling stats count the
// forwarded calls and the rejections apart.
func TestOpenCarriesItsEvidence(t *testing.T) {
	up := newUpstream(t)
	other := newUpstream(t)
	cfg, err := config.Parse("test.yaml", []byte(`
services:
  - {name: pay, upstream: '`+up.URL+`', failure_threshold: 3}
  - {name: other, upstream: '`+other.URL+`', failure_threshold: 3}
`))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	f := &fixture{t: t, clk: breakertest.NewClock()}
	f.srv, err = proxy.New(cfg, proxy.Options{Clock: f.clk, Replica: "replica-a",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.proxy, f.admin = startProxy(t, f.srv, config.EngineNetHTTP), httptestServer(t, f.srv.Admin())

	f.status("/pay/ok") // a success before the outage
	up.status.Store(503)
	for range 3 {
		if got := f.status("/pay/x"); got != 503 {
			t.Fatalf("status %d, want the upstream's 503", got)
		}
	}
	for range 4 {
		f.status("/pay/x") // rejected
	}
	other.status.Store(500)
	for range 3 {
		f.status("/other/x") // a transition of another circuit: not in ?circuit=pay
	}

	var list []proxy.TransitionJSON
	getJSON(t, f.admin.URL+"/api/transitions?circuit=pay", &list)
	if len(list) != 1 || list[0].To != "open" || list[0].Replica != "replica-a" {
		t.Fatalf("transitions of pay = %+v, want its one opening, by replica-a", list)
	}
	ev := list[0].Evidence
	if len(ev) != 4 || ev[0].Status != 200 || ev[1].Status != 503 || ev[3].Status != 503 || ev[3].At.IsZero() || ev[3].LatencyMs <= 0 {
		t.Errorf("evidence = %+v, want the 200 then the three 503s, timed", ev)
	}
	if list[0].OpenForSeconds != 60 {
		t.Errorf("open_for_seconds = %v, want 60", list[0].OpenForSeconds)
	}

	c := f.circuit("pay")
	if c.Opened == nil || len(c.Opened.Evidence) != 4 {
		t.Errorf("circuit's opened = %+v, want the opening with its evidence", c.Opened)
	}
	st := c.Stats
	if st == nil {
		t.Fatal("no stats after traffic")
	}
	var calls, failures, rejected uint32
	for i := range st.Buckets.Requests {
		calls += st.Buckets.Requests[i]
		failures += st.Buckets.Failures[i]
		rejected += st.Buckets.Rejected[i]
	}
	if calls != 4 || failures != 3 || rejected != 4 || st.ErrorPercent != 75 {
		t.Errorf("stats: %d calls, %d failures, %d rejected, %v%% errors; want 4, 3, 4, 75", calls, failures, rejected, st.ErrorPercent)
	}
	if len(c.Recent) != 4 || len(st.Buckets.P99Ms) != len(st.Buckets.Requests) {
		t.Errorf("one circuit's page: %d recent outcomes, %d p99 buckets", len(c.Recent), len(st.Buckets.P99Ms))
	}

	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "OPEN for pay") {
			line = l
		}
	}
	if !strings.Contains(line, `evidence="200/`) || strings.Count(line, "503/") != 3 {
		t.Errorf("transition log line = %q, want evidence with the 200 and three 503s", line)
	}

	var all []proxy.TransitionJSON
	getJSON(t, f.admin.URL+"/api/transitions?limit=1", &all)
	if len(all) != 1 || all[0].Circuit != "other" {
		t.Errorf("?limit=1 = %+v, want the newest (other's)", all)
	}
	for _, bad := range []string{"?circuit=nope", "?limit=0", "?limit=x"} {
		resp, err := http.Get(f.admin.URL + "/api/transitions" + bad)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || !strings.Contains(body.String(), strings.SplitN(bad[1:], "=", 2)[0]+"=") {
			t.Errorf("GET /api/transitions%s: %d %s, want an error naming the parameter", bad, resp.StatusCode, body.String())
		}
	}
}

// TestCircuitsDelta: ?since= answers only circuits that may have changed.
func TestCircuitsDelta(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, `
services:
  - {name: busy, upstream: '`+up.URL+`'}
  - {name: idle, upstream: '`+up.URL+`'}
`)
		resp, err := http.Get(f.admin.URL + "/api/circuits")
		if err != nil {
			t.Fatal(err)
		}
		var all []proxy.Circuit
		json.NewDecoder(resp.Body).Decode(&all)
		resp.Body.Close()
		since := resp.Header.Get("Breakerbox-Time")
		if len(all) != 2 || since == "" || resp.Header.Get("Breakerbox-Replica") == "" {
			t.Fatalf("full list: %d circuits, Breakerbox-Time %q", len(all), since)
		}
		f.status("/busy/x")
		var delta []proxy.Circuit
		getJSON(t, f.admin.URL+"/api/circuits?since="+since, &delta)
		if len(delta) != 1 || delta[0].Name != "busy" || delta[0].Stats == nil || delta[0].Stats.Buckets.Requests[len(delta[0].Stats.Buckets.Requests)-1] != 1 {
			t.Errorf("delta = %+v, want busy alone with its call", delta)
		}
		if resp, _ := http.Get(f.admin.URL + "/api/circuits?since=yesterday"); resp.StatusCode != 400 {
			t.Errorf("?since=yesterday: %d, want 400", resp.StatusCode)
		}
	})
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}
