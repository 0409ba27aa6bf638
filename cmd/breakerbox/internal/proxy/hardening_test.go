package proxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// uriUpstream records the request-target each request arrived with.
func uriUpstream(t *testing.T) (*httptest.Server, func() []string) {
	var mu sync.Mutex
	var uris []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		uris = append(uris, r.RequestURI)
		mu.Unlock()
	}))
	t.Cleanup(up.Close)
	return up, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), uris...)
	}
}

func TestEncodedRoutingSegmentKeepsEncodedSlash(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up, uris := uriUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services:\n  - {name: rec, upstream: '%s/base'}\n  - {name: g, per_region: {eu: '%s/b2'}}", up.URL, up.URL))
		addr := strings.TrimPrefix(f.proxy.URL, "http://")
		for _, tt := range []struct{ sent, want string }{
			{"/rec/a%2Fb", "/base/a%2Fb"},
			{"/%72ec/a%2Fb", "/base/a%2Fb"},
			{"/%72%65%63/a%2Fb?q=1", "/base/a%2Fb?q=1"},
			{"/rec/plain/path", "/base/plain/path"},
			{"/%72ec/plain", "/base/plain"},
			{"/g/%65u/x%2Fy", "/b2/x%2Fy"},
			{"/%67/eu/x%2Fy", "/b2/x%2Fy"},
		} {
			resp := rawRequest(t, addr, "GET "+tt.sent+" HTTP/1.1\r\nHost: a\r\n\r\n")
			got := uris()
			if resp.StatusCode != 200 || len(got) == 0 || got[len(got)-1] != tt.want {
				t.Errorf("%s: %d, upstream saw %v, want %s", tt.sent, resp.StatusCode, got, tt.want)
			}
		}
	})
}

func TestDotSegmentsAreRefused(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up, uris := uriUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: '%s/base/v1'}]", up.URL))
		addr := strings.TrimPrefix(f.proxy.URL, "http://")
		for _, path := range []string{
			"/svc/../admin", "/svc/..", "/svc/a/../../admin", "/svc/%2e%2e/admin", "/svc/%2E%2e/admin",
			"/svc/.%2e/admin", "/svc/a%2F..%2F..%2Fadmin", "/svc/./x", "/svc/..%5C..%5Cadmin", "/svc/%2e",
		} {
			resp := rawRequest(t, addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
			if b := body(resp); resp.StatusCode != 400 || !strings.Contains(b, "segment") {
				t.Errorf("%s: %d %s, want 400", path, resp.StatusCode, b)
			}
		}
		if got := uris(); len(got) != 0 {
			t.Fatalf("the upstream received %v", got)
		}
		// Dots inside a segment are ordinary characters.
		resp := rawRequest(t, addr, "GET /svc/a..b/.well-known/x.json HTTP/1.1\r\nHost: a\r\n\r\n")
		if got := uris(); resp.StatusCode != 200 || len(got) != 1 || got[0] != "/base/v1/a..b/.well-known/x.json" {
			t.Fatalf("dots inside segments: %d %v", resp.StatusCode, got)
		}
	})
}

func TestUpstreamCannotPassForTheProxysOpenAnswer(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Breakerbox-State", "open")
			w.Header().Set("Breakerbox-Circuit", "svc")
			w.Header().Set("Retry-After", "86400")
			w.WriteHeader(503)
		}))
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 100}]", up.URL))
		resp, _ := f.get("/svc/x")
		if resp.StatusCode != 503 || resp.Header.Get("Breakerbox-State") != "" || resp.Header.Get("Breakerbox-Circuit") != "" {
			t.Fatalf("%d %v: the upstream's answer carries the proxy's headers", resp.StatusCode, resp.Header)
		}
		if resp.Header.Get("Upstream-Breakerbox-State") != "open" || resp.Header.Get("Retry-After") != "86400" {
			t.Fatalf("%v: want the upstream's headers under Upstream-Breakerbox-*, its Retry-After untouched", resp.Header)
		}
	})
}

func TestHeadersNominatedByConnectionCloseAreNotForwarded(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, conn := range []string{"close, X-Secret", "X-Secret, close", "keep-alive, X-Secret"} {
			t.Run(conn, func(t *testing.T) {
				up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Connection", conn)
					w.Header().Set("X-Secret", "hop-by-hop")
					w.Header().Set("X-Public", "end-to-end")
				}))
				defer up.Close()
				f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
				for i := range 2 { // a fresh connection, then (keep-alive) a reused one
					resp, _ := f.get("/svc/x")
					if resp.StatusCode != 200 || resp.Header.Get("X-Secret") != "" || resp.Header.Get("X-Public") != "end-to-end" {
						t.Fatalf("request %d: %d %v", i+1, resp.StatusCode, resp.Header)
					}
				}
			})
		}
	})
}

func TestBadGatewayBodyHasNoErrorDetail(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: gone, upstream: 'http://%s'}]", addr))
		resp, b := f.get("/gone/x")
		if resp.StatusCode != 502 || !strings.Contains(b, "upstream unreachable") {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
		for _, leak := range []string{"dial", "connect", "refused", addr, "127.0.0.1"} {
			if strings.Contains(b, leak) {
				t.Fatalf("502 body leaks %q: %s", leak, b)
			}
		}
	})
}

func TestInformationalAnswersAreNotTheRequestsStatus(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "ok")
		}))
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		if code := f.status("/svc/x"); code != 200 {
			t.Fatalf("%d", code)
		}
		m := f.metrics()
		if !strings.Contains(m, `breakerbox_proxy_requests_total{circuit="svc",region="",service="svc",status_class="2xx"} 1`) || strings.Contains(m, `status_class="1xx"`) {
			t.Fatalf("want one 2xx and no 1xx:\n%s", grep(m, "breakerbox_proxy_requests_total"))
		}
	})
}

func TestForcedOpenRetryAfterIsTheOpenTimeout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q, open_timeout: 45s}]", up.URL))
		f.srv.Registry().MustGet("svc").ForceOpen()
		resp, b := f.get("/svc/x")
		var j map[string]any
		json.Unmarshal([]byte(b), &j)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "45" || j["retry_after_seconds"] != 45.0 || j["state"] != "forced_open" {
			t.Fatalf("%d Retry-After %q body %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	})
}

func TestRouteSeriesAppearOnFirstTraffic(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services:\n  - {name: a, upstream: %q}\n  - {name: b, upstream: %q}", up.URL, up.URL))
		if m := f.metrics(); strings.Contains(m, "breakerbox_proxy_request") {
			t.Fatalf("route series before any request:\n%s", grep(m, "breakerbox_proxy_request"))
		}
		f.status("/a/x")
		m := f.metrics()
		if !strings.Contains(m, `breakerbox_proxy_requests_total{circuit="a",region="",service="a",status_class="2xx"} 1`) ||
			!strings.Contains(m, `breakerbox_proxy_request_duration_seconds_count{circuit="a",region="",service="a"} 1`) ||
			strings.Contains(m, `service="b"`) || strings.Contains(m, `status_class="5xx"`) {
			t.Fatalf("after one request to a:\n%s", grep(m, "breakerbox_proxy_request"))
		}
	})
}

func (f *fixture) metrics() string {
	f.t.Helper()
	resp, err := http.Get(f.admin.URL + "/metrics")
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// panicOn is a log handler that panics on the record with message msg,
// the way to make the proxy's own code panic mid-request.
type panicOn struct {
	slog.Handler
	msg string
}

func (h panicOn) Enabled(context.Context, slog.Level) bool { return true }

func (h panicOn) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		panic("test: " + h.msg)
	}
	return nil
}

// TestAPanicEndsOnlyItsRequest: a panic in the proxy's code ends that
// request's connection, is logged, and the proxy keeps serving (fasthttp,
// unlike net/http's server, would not recover it by itself).
func TestAPanicEndsOnlyItsRequest(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		log := slog.New(panicOn{Handler: slog.DiscardHandler, msg: "upstream answered 5xx"})
		srv := newServer(t, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL), log)
		ps := startProxy(t, srv, engine)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		up.status.Store(500) // the proxy logs it, and panics there
		if resp, err := client.Get(ps.URL + "/svc/x"); err == nil {
			resp.Body.Close()
			if resp.StatusCode != 500 {
				t.Fatalf("the panicking request: %d, want 500 or a cut connection", resp.StatusCode)
			}
		}
		up.status.Store(200)
		resp, err := client.Get(ps.URL + "/svc/x")
		if err != nil {
			t.Fatalf("after a panic: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after a panic: %d, want 200", resp.StatusCode)
		}
	})
}
