package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
	"github.com/breakerbox/breakerbox/redisstate/redisstateprom"
)

// The alerting and recording rules and the Grafana dashboard shipped in
// deploy/, relative to this package.
var (
	rulesDir  = filepath.Join("..", "..", "deploy", "prometheus")
	dashboard = filepath.Join("..", "..", "deploy", "grafana", "breakerbox.json")
)

// lookTool finds a tool of the prometheus package: a failure in CI, a skip
// elsewhere.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not on PATH in CI: install it (apt-get install prometheus)", name)
		}
		t.Skipf("%s not on PATH; install it (apt-get install prometheus) to run this test", name)
	}
	return p
}

// TestPrometheusRules checks the rules and runs their unit tests
// (deploy/prometheus/breakerbox.rules.test.yml) with promtool.
func TestPrometheusRules(t *testing.T) {
	promtool := lookTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "breakerbox.rules.yml"},
		{"test", "rules", "breakerbox.rules.test.yml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = rulesDir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// grafanaDashboard is the part of the dashboard JSON the test reads.
type grafanaDashboard struct {
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestGrafanaDashboardQueries runs a sidecar in a fleet on a real Redis with
// traffic (a healthy service, a failing one whose circuit opens, a region),
// has a real Prometheus scrape it every second with the shipped rules
// loaded, and runs every panel's query and every recording rule through
// Prometheus's API: each must succeed and return data.
func TestGrafanaDashboardQueries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and prometheus")
	}
	promBin := lookTool(t, "prometheus")
	var d grafanaDashboard
	raw, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	if len(d.Panels) == 0 {
		t.Fatalf("%s: no panels", dashboard)
	}

	// The sidecar, sharing its circuits through Redis.
	rdb := redistest.Start(t)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer bad.Close()
	cfg, err := config.Parse("dashboard.yaml", []byte(fmt.Sprintf(`state: %s
services:
  - {name: ok, upstream: %q}
  - {name: bad, upstream: %q, failure_threshold: 2, open_timeout: 10m}
  - {name: genesys, per_region: {eu-west-1: %q}}
`, rdb.URL(), ok.URL, bad.URL, ok.URL)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	fleet, err := openFleet(context.Background(), cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	srv, err := proxy.New(cfg, proxy.Options{Logger: log, Sync: fleet, Collectors: []prometheus.Collector{redisstateprom.NewCollector(fleet)}})
	if err != nil {
		t.Fatal(err)
	}
	proxyHTTP := httptest.NewServer(srv)
	defer proxyHTTP.Close()
	admin := httptest.NewServer(srv.Admin())
	defer admin.Close()

	// Traffic to the failing service starts once Prometheus has scraped its
	// circuit closed: it sees the transition happen.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	traffic := make(chan struct{})
	failing := make(chan struct{})
	go func(failing <-chan struct{}) {
		defer close(traffic)
		paths := []string{"/ok/x", "/genesys/eu-west-1/x"}
		for ctx.Err() == nil {
			select {
			case <-failing:
				paths, failing = append(paths, "/bad/x"), nil
			default:
			}
			for _, p := range paths {
				if resp, err := http.Get(proxyHTTP.URL + p); err == nil {
					resp.Body.Close()
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // a steady trickle, so that rates are not 0
			}
		}
	}(failing)
	defer func() { stop(); <-traffic }()

	// Prometheus, scraping the admin listener every second.
	rules, err := filepath.Abs(filepath.Join(rulesDir, "breakerbox.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target := strings.TrimPrefix(admin.URL, "http://")
	promCfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: breakerbox
    static_configs: [{targets: [%q]}]
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	cmd := exec.Command(promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	promLog := new(syncbuf.Buffer)
	cmd.Stdout, cmd.Stderr = promLog, promLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus:\n%s", promLog)
		}
	}()

	query := func(expr string) (n int, err error) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(expr))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, err
		}
		if r.Status != "success" {
			return 0, fmt.Errorf("%s: %s", r.Status, r.Error)
		}
		return len(r.Data.Result), nil
	}
	// Wait until Prometheus has ten scrapes of the sidecar with traffic,
	// and has evaluated the rules on them. Deadlock guard only.
	deadline := time.Now().Add(2 * time.Minute)
	waitData := func(expr string) {
		for {
			if n, err := query(expr); err == nil && n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("prometheus never had %s", expr)
			}
			time.Sleep(200 * time.Millisecond) // polling a server we started
		}
	}
	waitData(`count_over_time(breakerbox_circuit_state{circuit="bad",state="closed"}[1m]) >= 2`)
	close(failing)
	waitData(`count_over_time(breakerbox_proxy_requests_total{circuit="ok"}[1m]) >= 10`)
	waitData(`count_over_time(breakerbox_rejected_total{circuit="bad",reason="open"}[1m]) >= 10`)

	// Grafana's variables as on a dashboard showing every circuit; a rate
	// interval of ten scrapes.
	expand := strings.NewReplacer("$__rate_interval", "10s", "$circuit", ".+")
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			expr := expand.Replace(tg.Expr)
			n, err := query(expr)
			switch {
			case err != nil:
				t.Errorf("panel %q: %s: %v", p.Title, expr, err)
			case n == 0:
				t.Errorf("panel %q: %s: no data", p.Title, expr)
			}
		}
	}
	for _, rule := range []string{
		"circuit:breakerbox_proxy_requests:rate1m", "circuit:breakerbox_calls_failed:ratio_rate1m",
		"circuit:breakerbox_rejected:rate1m", "circuit:breakerbox_proxy_request_duration_seconds:p50_1m",
		"circuit:breakerbox_proxy_request_duration_seconds:p99_1m", "circuit:breakerbox_trip:ratio",
		"breakerbox:circuits_not_closed:count",
	} {
		waitData(rule)
	}
	if n, err := query(`breakerbox:circuits_not_closed:count == 1`); err != nil || n != 1 {
		t.Errorf("circuits not closed: %d series equal to 1 (%v), want the bad circuit alone", n, err)
	}
}
