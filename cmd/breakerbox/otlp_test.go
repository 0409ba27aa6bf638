package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// push is what the receiver decoded from one OTLP request: the resource's
// attributes and every data point as "metric{attr=value,...}" → value.
type push struct {
	resource map[string]string
	points   map[string]float64
}

// receiver is an OTLP/HTTP metrics endpoint that decodes each request and
// hands it to the test.
func receiver(t *testing.T) (*httptest.Server, <-chan push) {
	t.Helper()
	pushes := make(chan push, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/metrics" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("%s %s (%s), want POST /v1/metrics as application/x-protobuf", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Errorf("gzip: %v", err)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			t.Errorf("read: %v", err)
			return
		}
		var req colmetricspb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			t.Errorf("decode: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		pushes <- decode(&req)
		resp, _ := proto.Marshal(&colmetricspb.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	return srv, pushes
}

func decode(req *colmetricspb.ExportMetricsServiceRequest) push {
	p := push{resource: map[string]string{}, points: map[string]float64{}}
	for _, rm := range req.ResourceMetrics {
		for _, kv := range rm.GetResource().GetAttributes() {
			p.resource[kv.Key] = kv.Value.GetStringValue()
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				dps := m.GetSum().GetDataPoints()
				if g := m.GetGauge(); g != nil {
					dps = g.DataPoints
				}
				for _, dp := range dps {
					switch v := dp.Value.(type) {
					case *metricspb.NumberDataPoint_AsInt:
						p.points[pointKey(m.Name, dp.Attributes)] = float64(v.AsInt)
					case *metricspb.NumberDataPoint_AsDouble:
						p.points[pointKey(m.Name, dp.Attributes)] = v.AsDouble
					}
				}
			}
		}
	}
	return p
}

func pointKey(name string, attrs []*commonpb.KeyValue) string {
	var kv []string
	for _, a := range attrs {
		kv = append(kv, a.Key+"="+a.Value.GetStringValue())
	}
	sort.Strings(kv)
	return name + "{" + strings.Join(kv, ",") + "}"
}

// next returns the next push, failing the test after 10s without one.
func next(t *testing.T, pushes <-chan push) push {
	t.Helper()
	select {
	case p := <-pushes:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no OTLP push in 10s")
		return push{}
	}
}

// The breakers' metrics reach the collector: here pushed once, by the stop
// func on shutdown (the interval is an hour, so no periodic push interferes).
func TestOTLPPushesBreakerMetricsOnShutdown(t *testing.T) {
	srv, pushes := receiver(t)
	t.Setenv(envEndpoint, srv.URL)
	t.Setenv(envInterval, "3600000")
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{FailureThreshold: 1, CountSuccesses: true, Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	reg.MustGet("cloudflare").Do(context.Background(), func(context.Context) error { return fmt.Errorf("HTTP 503") })
	reg.MustGet("cloudflare").Do(context.Background(), func(context.Context) error { return nil }) // rejected
	reg.MustGet("google-admin").Do(context.Background(), func(context.Context) error { return nil })

	var out bytes.Buffer
	stop, err := startOTLP(reg, slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if want := `msg="pushing metrics over OTLP" endpoint=` + srv.URL + "/v1/metrics every=1h0m0s"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q, want it to say %q", out.String(), want)
	}
	select {
	case p := <-pushes:
		t.Fatalf("pushed before the interval or shutdown: %v", p.points)
	default:
	}
	stop()
	p := next(t, pushes)
	if p.resource["service.name"] != "breakerbox" {
		t.Errorf("resource %v, want service.name=breakerbox", p.resource)
	}
	for k, want := range map[string]float64{
		"breaker.state{breaker.name=cloudflare,breaker.state=open}":                                              1,
		"breaker.state{breaker.name=cloudflare,breaker.state=closed}":                                            0,
		"breaker.state{breaker.name=google-admin,breaker.state=closed}":                                          1,
		"breaker.calls{breaker.name=cloudflare,breaker.outcome=failure}":                                         1,
		"breaker.calls{breaker.name=google-admin,breaker.outcome=success}":                                       1,
		"breaker.rejections{breaker.name=cloudflare,breaker.rejection.reason=open}":                              1,
		"breaker.transitions{breaker.name=cloudflare,breaker.transition.from=closed,breaker.transition.to=open}": 1,
	} {
		if got, ok := p.points[k]; !ok || got != want {
			t.Errorf("%s = %v (pushed: %v), want %v", k, got, ok, want)
		}
	}
	if ra := p.points["breaker.retry_after{breaker.name=cloudflare}"]; ra <= 0 || ra > 60 {
		t.Errorf("breaker.retry_after for the open breaker = %v, want in (0, 60]", ra)
	}
}

// serve pushes the configured circuits every OTEL_METRIC_EXPORT_INTERVAL,
// and stops pushing when it stops.
func TestServePushesOTLPWhenTheEnvironmentSaysSo(t *testing.T) {
	srv, pushes := receiver(t)
	t.Setenv(envMetricsEndpoint, srv.URL+"/v1/metrics")
	t.Setenv(envInterval, "20")
	cfg, err := config.Parse("t.yaml", []byte("listen: "+freeAddr(t)+"\nadmin: "+freeAddr(t)+"\nservices:\n  - {name: a, upstream: 'http://127.0.0.1:1'}\n  - {name: g, per_region: {r1: 'http://127.0.0.1:2'}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, "", time.Second, slog.New(slog.NewTextHandler(&out, nil))) }()
	for range 2 { // periodic pushes, not only the last one
		p := next(t, pushes)
		for _, k := range []string{"breaker.state{breaker.name=a,breaker.state=closed}", "breaker.state{breaker.name=g/r1,breaker.state=closed}"} {
			if p.points[k] != 1 {
				t.Fatalf("push without %s = 1: %v", k, p.points)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `msg="pushing metrics over OTLP" endpoint=`+srv.URL+"/v1/metrics every=20ms") {
		t.Errorf("output %q does not announce the push", out.String())
	}
}

func TestOTLPEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string // "" for no error
		wantOn  bool
	}{
		{"no endpoint: off", nil, "", false},
		{"endpoint", map[string]string{envEndpoint: "http://127.0.0.1:4318"}, "", true},
		{"sdk disabled", map[string]string{envEndpoint: "http://127.0.0.1:4318", envSDKDisabled: "true"}, "", false},
		{"exporter none", map[string]string{envEndpoint: "http://127.0.0.1:4318", envMetricsExporter: "none"}, "", false},
		{"exporter prometheus", map[string]string{envEndpoint: "http://127.0.0.1:4318", envMetricsExporter: "prometheus"}, envMetricsExporter, false},
		{"endpoint without scheme", map[string]string{envEndpoint: "127.0.0.1:4318"}, envEndpoint, false},
		{"metrics endpoint not a URL", map[string]string{envMetricsEndpoint: "http://[::1"}, envMetricsEndpoint, false},
		{"grpc protocol", map[string]string{envEndpoint: "http://127.0.0.1:4317", envProtocol: "grpc"}, envProtocol, false},
		{"metrics protocol wins", map[string]string{envEndpoint: "http://127.0.0.1:4318", envProtocol: "grpc", envMetricsProtocol: "http/protobuf"}, "", true},
		{"interval not a number", map[string]string{envEndpoint: "http://127.0.0.1:4318", envInterval: "15s"}, envInterval, false},
		{"timeout not positive", map[string]string{envEndpoint: "http://127.0.0.1:4318", envTimeout: "0"}, envTimeout, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range []string{envEndpoint, envMetricsEndpoint, envProtocol, envMetricsProtocol, envInterval, envTimeout, envMetricsExporter, envSDKDisabled} {
				t.Setenv(name, tc.env[name])
			}
			endpoint, _, err := otlpSettings()
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
			}
			if on := endpoint != ""; on != tc.wantOn {
				t.Fatalf("push on = %v (endpoint %q), want %v", on, endpoint, tc.wantOn)
			}
		})
	}
}
