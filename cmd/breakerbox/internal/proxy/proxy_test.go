package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// upstream is a real HTTP server on loopback whose answer the test sets.
type upstream struct {
	*httptest.Server
	status atomic.Int32
	hits   atomic.Int32
	block  chan struct{} // when non-nil, requests wait on it
	mu     sync.Mutex
	last   *http.Request
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.status.Store(200)
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.last = r.Clone(r.Context())
		block := u.block
		u.mu.Unlock()
		if block != nil {
			<-block
		}
		w.Header().Set("Connection", "keep-alive, X-Secret")
		w.Header().Set("X-Secret", "hop-by-hop")
		w.WriteHeader(int(u.status.Load()))
		fmt.Fprintf(w, "path=%s query=%s host=%s", r.URL.Path, r.URL.RawQuery, r.Host)
	}))
	t.Cleanup(u.Close)
	return u
}

type fixture struct {
	t     *testing.T
	clk   *breakertest.Clock
	srv   *proxy.Server
	proxy *testProxy
	admin *httptest.Server
}

// newFixture serves yaml's config on the net/http engine.
func newFixture(t *testing.T, yaml string) *fixture {
	t.Helper()
	return newFixtureOn(t, config.EngineNetHTTP, yaml)
}

// newFixtureOn serves yaml's config on engine.
func newFixtureOn(t *testing.T, engine, yaml string) *fixture {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, clk: breakertest.NewClock()}
	f.srv, err = proxy.New(cfg, proxy.Options{Clock: f.clk, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	f.proxy = startProxy(t, f.srv, engine)
	f.admin = httptest.NewServer(f.srv.Admin())
	t.Cleanup(f.admin.Close)
	return f
}

func (f *fixture) get(path string) (*http.Response, string) {
	f.t.Helper()
	resp, err := http.Get(f.proxy.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (f *fixture) status(path string) int {
	f.t.Helper()
	resp, _ := f.get(path)
	return resp.StatusCode
}

func (f *fixture) circuit(name string) proxy.Circuit {
	f.t.Helper()
	resp, err := http.Get(f.admin.URL + "/api/circuits/" + name)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var c proxy.Circuit
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		f.t.Fatal(err)
	}
	return c
}

func genesysConfig(us, eu string) string {
	return fmt.Sprintf(`
services:
  - name: genesys
    failure_threshold: 10
    open_timeout: 60s
    half_open_successes: 3
    per_region:
      us-east-1: %s
      eu-west-1: %s
`, us, eu)
}

func TestT10OverHTTP(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		us, eu := newUpstream(t), newUpstream(t)
		f := newFixtureOn(t, engine, genesysConfig(us.URL, eu.URL))
		const path = "/genesys/eu-west-1/api/v2/conversations/messages/inbound"

		eu.status.Store(503)
		for i := range 10 {
			if got := f.status(path); got != 503 {
				t.Fatalf("request %d: %d, want the upstream's 503", i+1, got)
			}
		}
		if c := f.circuit("genesys/eu-west-1"); c.State != "open" {
			t.Fatalf("after 10 × 503 state %s, want open", c.State)
		}

		t.Run("WhileOpenUpstreamReceivesNothing", func(t *testing.T) {
			before := eu.hits.Load()
			f.clk.Advance(20 * time.Second)
			for range 50 {
				resp, body := f.get(path)
				if resp.StatusCode != 503 || resp.Header.Get("Breakerbox-State") != "open" ||
					resp.Header.Get("Breakerbox-Circuit") != "genesys/eu-west-1" || resp.Header.Get("Retry-After") != "40" {
					t.Fatalf("open answer: %d %v", resp.StatusCode, resp.Header)
				}
				var b map[string]any
				if json.Unmarshal([]byte(body), &b) != nil || b["error"] != "circuit open" || b["circuit"] != "genesys/eu-west-1" ||
					b["state"] != "open" || b["retry_after_seconds"] != 40.0 {
					t.Fatalf("open body: %s", body)
				}
			}
			if n := eu.hits.Load() - before; n != 0 {
				t.Fatalf("upstream received %d requests while open", n)
			}
		})

		t.Run("RegionsAreIndependent", func(t *testing.T) {
			if got := f.status("/genesys/us-east-1/api/v2/users"); got != 200 {
				t.Fatalf("us-east-1: %d, want 200", got)
			}
		})

		t.Run("AfterTimeoutOneProbe", func(t *testing.T) {
			f.clk.Advance(40 * time.Second)
			if c := f.circuit("genesys/eu-west-1"); c.State != "half_open" {
				t.Fatalf("state %s, want half_open", c.State)
			}
			eu.status.Store(200)
			eu.mu.Lock()
			eu.block = make(chan struct{})
			eu.mu.Unlock()
			base := eu.hits.Load()
			done := make(chan int)
			go func() {
				resp, err := http.Get(f.proxy.URL + path)
				if err != nil {
					done <- 0
					return
				}
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			for i := 0; eu.hits.Load() == base; i++ {
				if i > 10000 {
					t.Fatal("the probe never reached the upstream")
				}
				time.Sleep(time.Millisecond) // waiting for a real request to arrive, not timing anything
			}
			if n := f.circuit("genesys/eu-west-1").ProbesInFlight; n != 1 {
				t.Fatalf("probes in flight %d, want 1", n)
			}
			resp, _ := f.get(path) // a second caller while the probe is out
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("second call during the probe: %d, want 503 with Retry-After", resp.StatusCode)
			}
			eu.mu.Lock()
			close(eu.block)
			eu.block = nil
			eu.mu.Unlock()
			if code := <-done; code != 200 {
				t.Fatalf("probe answered %d", code)
			}
			if eu.hits.Load() != base+1 {
				t.Fatal("the rejected call reached the upstream")
			}
		})

		t.Run("FailedProbeReopens", func(t *testing.T) {
			eu.status.Store(500)
			f.status(path)
			if c := f.circuit("genesys/eu-west-1"); c.State != "open" || c.LastTransition.Reason != "probe_failed" {
				t.Fatalf("state %s after a failed probe", c.State)
			}
		})

		t.Run("ThreeSuccessesClose", func(t *testing.T) {
			f.clk.Advance(time.Minute)
			eu.status.Store(200)
			for i := range 3 {
				if got := f.status(path); got != 200 {
					t.Fatalf("probe %d: %d", i+1, got)
				}
			}
			if c := f.circuit("genesys/eu-west-1"); c.State != "closed" {
				t.Fatalf("state %s after 3 successes", c.State)
			}
		})
	})
}

func Test4xxAnd429NeverOpen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 2}]", up.URL))
		for _, code := range []int{400, 404, 422, 429} {
			up.status.Store(int32(code))
			for range 5 {
				if got := f.status("/svc/x"); got != code {
					t.Fatalf("got %d, want the upstream's %d passed through", got, code)
				}
			}
		}
		c := f.circuit("svc")
		if c.State != "closed" || c.Counts["ignored"] != 5 || c.Counts["success"] != 15 || c.Counts["failure"] != 0 {
			t.Fatalf("circuit %+v", c)
		}
	})
}

func TestTimeoutAnswers504AndCounts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		up.block = make(chan struct{})
		defer close(up.block)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: slow, upstream: %q, failure_threshold: 2, timeout: 50ms}]", up.URL))
		for range 2 {
			resp, body := f.get("/slow/x")
			if resp.StatusCode != 504 || !strings.Contains(body, "upstream timeout") {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		}
		if c := f.circuit("slow"); c.State != "open" {
			t.Fatalf("state %s after 2 timeouts", c.State)
		}
	})
}

func TestConnectionRefusedAnswers502AndCounts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens here now
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: gone, upstream: 'http://%s', failure_threshold: 2}]", addr))
		for range 2 {
			resp, body := f.get("/gone/x")
			if resp.StatusCode != 502 || !strings.Contains(body, "upstream unreachable") {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		}
		if resp, _ := f.get("/gone/x"); resp.StatusCode != 503 || resp.Header.Get("Breakerbox-State") != "open" {
			t.Fatalf("third call: %d", resp.StatusCode)
		}
	})
}

func TestForwarding(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: cf, upstream: '%s/base'}]", up.URL))
		req, _ := http.NewRequest("GET", f.proxy.URL+"/cf/client/v4/zones?page=2&per_page=50", nil)
		req.Header.Set("Authorization", "Bearer upstream-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		upHost := strings.TrimPrefix(up.URL, "http://")
		if want := "path=/base/client/v4/zones query=page=2&per_page=50 host=" + upHost; string(body) != want {
			t.Fatalf("upstream saw %q, want %q", body, want)
		}
		if resp.Header.Get("X-Secret") != "" {
			t.Fatal("hop-by-hop header named in Connection was forwarded")
		}
		up.mu.Lock()
		last := up.last
		up.mu.Unlock()
		if last.Header.Get("X-Forwarded-For") != "127.0.0.1" || last.Header.Get("Authorization") != "Bearer upstream-token" ||
			last.Header.Get("X-Forwarded-Prefix") != "/cf" {
			t.Fatalf("upstream headers: %v", last.Header)
		}
	})
}

func TestUnknownServiceAndRegion404(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		us, eu := newUpstream(t), newUpstream(t)
		f := newFixtureOn(t, engine, genesysConfig(us.URL, eu.URL))
		resp, body := f.get("/nope/x")
		if resp.StatusCode != 404 || !strings.Contains(body, `"genesys"`) || !strings.Contains(body, "only to configured upstreams") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body = f.get("/genesys/mars-1/x")
		if resp.StatusCode != 404 || !strings.Contains(body, `"eu-west-1"`) || !strings.Contains(body, `"us-east-1"`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if us.hits.Load()+eu.hits.Load() != 0 {
			t.Fatal("an unknown route reached an upstream")
		}
	})
}

func TestAdminManualControlNeedsToken(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		for _, tt := range []struct {
			name, token, auth string
			want              int
		}{
			{"Disabled", "", "Bearer x", 403},
			{"Missing", "s3cret-0123456789", "", 401},
			{"Wrong", "s3cret-0123456789", "Bearer nope", 401},
			{"Right", "s3cret-0123456789", "Bearer s3cret-0123456789", 200},
		} {
			t.Run(tt.name, func(t *testing.T) {
				yaml := fmt.Sprintf("admin_token: %q\nservices: [{name: svc, upstream: %q}]", tt.token, up.URL)
				f := newFixtureOn(t, engine, yaml)
				req, _ := http.NewRequest("POST", f.admin.URL+"/api/circuits/svc/open", nil)
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
				}
				want := "closed"
				if tt.want == 200 {
					want = "forced_open"
				}
				if c := f.circuit("svc"); c.State != want {
					t.Fatalf("state %s, want %s", c.State, want)
				}
			})
		}
	})
}

func TestAdminActions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("admin_token: t-0123456789abcdef\nservices: [{name: svc, upstream: %q}]", up.URL))
		post := func(path string) int {
			req, _ := http.NewRequest("POST", f.admin.URL+path, nil)
			req.Header.Set("Authorization", "Bearer t-0123456789abcdef")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for _, tt := range []struct {
			path  string
			code  int
			state string
		}{
			{"/api/circuits/svc/open", 200, "forced_open"},
			{"/api/circuits/svc/close", 200, "disabled"},
			{"/api/circuits/svc/reset", 200, "closed"},
			{"/api/circuits/svc/explode", 404, "closed"},
			{"/api/circuits/nope/open", 404, "closed"},
		} {
			if got := post(tt.path); got != tt.code {
				t.Errorf("POST %s: %d, want %d", tt.path, got, tt.code)
			}
			if c := f.circuit("svc"); c.State != tt.state {
				t.Errorf("after %s: %s, want %s", tt.path, c.State, tt.state)
			}
		}
		if f.status("/svc/x") != 200 {
			t.Fatal("reset circuit does not pass calls")
		}
	})
}

func TestReloadKeepsStateOfUnchangedCircuits(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		a, b := newUpstream(t), newUpstream(t)
		a.status.Store(500)
		b.status.Store(500)
		yaml := "services:\n  - {name: a, upstream: %q, failure_threshold: 1}\n  - {name: b, upstream: %q, failure_threshold: %d}\n"
		f := newFixtureOn(t, engine, fmt.Sprintf(yaml, a.URL, b.URL, 1))
		f.status("/a/x")
		f.status("/b/x")
		cfg, err := config.Parse("new.yaml", []byte(fmt.Sprintf(yaml+"  - {name: c, upstream: %q}\n", a.URL, b.URL, 2, a.URL)))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		if c := f.circuit("a"); c.State != "open" {
			t.Errorf("unchanged circuit a: %s, want it to stay open", c.State)
		}
		if c := f.circuit("b"); c.State != "open" || c.Settings.FailureThreshold != 2 {
			t.Errorf("changed circuit b: %s threshold %d, want it to stay open with the new threshold 2", c.State, c.Settings.FailureThreshold)
		}
		if f.status("/c/x") != 500 {
			t.Error("new service c not routed")
		}
	})
}

func TestMetricsExposition(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		f.status("/svc/x")
		resp, err := http.Get(f.admin.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`breakerbox_circuit_state{circuit="svc",state="closed"} 1`,
			`breakerbox_calls_total{circuit="svc",outcome="success"} 1`,
			`breakerbox_proxy_requests_total{circuit="svc",region="",service="svc",status_class="2xx"} 1`,
			`breakerbox_proxy_request_duration_seconds_count{circuit="svc",region="",service="svc"} 1`,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}
