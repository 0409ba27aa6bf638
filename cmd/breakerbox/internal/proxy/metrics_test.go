package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// TestRejectionsAreTimedApartFromForwardedRequests: a forwarded request is
// in the request histogram, a rejection only in the rejection histogram;
// both count in requests_total by status class.
func TestRejectionsAreTimedApartFromForwardedRequests(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		f.status("/svc/x")
		f.srv.Registry().MustGet("svc").ForceOpen()
		for range 3 {
			if code := f.status("/svc/x"); code != 503 {
				t.Fatalf("rejection: %d", code)
			}
		}
		m := f.metrics()
		for _, want := range []string{
			`breakerbox_proxy_request_duration_seconds_count{circuit="svc",region="",service="svc"} 1`,
			`breakerbox_proxy_request_duration_seconds_bucket{circuit="svc",region="",service="svc",le="+Inf"} 1`,
			`breakerbox_proxy_request_duration_seconds_bucket{circuit="svc",region="",service="svc",le="30"} 1`,
			`breakerbox_proxy_rejection_duration_seconds_bucket{circuit="svc",region="",service="svc",le="+Inf"} 3`,
			`breakerbox_proxy_rejection_duration_seconds_count{circuit="svc",region="",service="svc"} 3`,
			`breakerbox_proxy_requests_total{circuit="svc",region="",service="svc",status_class="2xx"} 1`,
			`breakerbox_proxy_requests_total{circuit="svc",region="",service="svc",status_class="5xx"} 3`,
			`breakerbox_rejected_total{circuit="svc",reason="open"} 3`,
		} {
			if !strings.Contains(m, want+"\n") {
				t.Errorf("/metrics lacks %s:\n%s", want, grep(m, `circuit="svc"`))
			}
		}
	})
}

// TestEverySeriesOfACircuitCarriesItsName: breaker and proxy series of a
// per-region circuit share circuit; the proxy's also say service and region.
func TestEverySeriesOfACircuitCarriesItsName(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: genesys, per_region: {eu-west-1: %q}}]", up.URL))
		f.status("/genesys/eu-west-1/x")
		m := f.metrics()
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, "breakerbox_") && !strings.Contains(l, `circuit="genesys/eu-west-1"`) {
				t.Errorf("series without the circuit: %s", l)
			}
			if strings.HasPrefix(l, "breakerbox_proxy_") && !strings.Contains(l, `region="eu-west-1",service="genesys"`) {
				t.Errorf("proxy series without service and region: %s", l)
			}
		}
		if !strings.Contains(m, `breakerbox_circuit_failure_threshold{circuit="genesys/eu-west-1"} 5`) ||
			!strings.Contains(m, `breakerbox_circuit_open_timeout_seconds{circuit="genesys/eu-west-1"} 60`) {
			t.Errorf("settings gauges missing:\n%s", grep(m, "breakerbox_circuit_"))
		}
	})
}

// TestReloadDropsARemovedCircuitsSeries: a removed circuit's series go, a
// kept circuit's counts carry on.
func TestReloadDropsARemovedCircuitsSeries(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		yaml := fmt.Sprintf("services:\n  - {name: a, upstream: %q}\n  - {name: b, upstream: %q}\n", up.URL, up.URL)
		f := newFixtureOn(t, engine, yaml)
		f.status("/a/x")
		f.status("/b/x")
		cfg, err := config.Parse("new.yaml", []byte(fmt.Sprintf("services: [{name: a, upstream: %q}]", up.URL)))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.srv.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		m := f.metrics()
		if strings.Contains(m, `circuit="b"`) || !strings.Contains(m, `breakerbox_proxy_requests_total{circuit="a",region="",service="a",status_class="2xx"} 1`+"\n") {
			t.Fatalf("after removing b:\n%s", grep(m, "circuit="))
		}
	})
}

// TestSidecarMetricsPassPromtool lints the sidecar's whole /metrics after
// forwarded requests, upstream errors and rejections.
func TestSidecarMetricsPassPromtool(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("promtool not on PATH in CI: install it (apt-get install prometheus)")
			}
			t.Skip("promtool not on PATH; install it (apt-get install prometheus) to run this check")
		}
		ok, bad := newUpstream(t), newUpstream(t)
		bad.status.Store(500)
		f := newFixtureOn(t, engine, fmt.Sprintf("services:\n  - {name: ok, upstream: %q}\n  - {name: bad, upstream: %q, failure_threshold: 1}\n", ok.URL, bad.URL))
		f.status("/ok/x")
		f.status("/bad/x")
		f.status("/bad/x") // rejected
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(f.metrics())
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	})
}

// TestScrapesWhileRequestsRunAreRaceFree: requests observe while /metrics
// is written, under -race.
func TestScrapesWhileRequestsRunAreRaceFree(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := newUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 50 {
				if resp, err := http.Get(f.proxy.URL + "/svc/x"); err == nil { // f.status would call t.Fatal off the test goroutine
					resp.Body.Close()
				}
			}
		}()
		for range 20 {
			f.metrics()
		}
		<-done
		if m := f.metrics(); !strings.Contains(m, `breakerbox_proxy_request_duration_seconds_count{circuit="svc",region="",service="svc"} 50`+"\n") {
			t.Fatalf("after 50 requests:\n%s", grep(m, "_count"))
		}
	})
}
