package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerotel"
)

// The standard OpenTelemetry environment variables that turn on and shape
// the OTLP push. The exporter and the SDK read them themselves; startOTLP
// reads them first to decide whether to push at all and to reject bad
// values up front, which the SDK would only log before falling back to a
// default.
const (
	envEndpoint        = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envMetricsEndpoint = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envProtocol        = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envMetricsProtocol = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
	envInterval        = "OTEL_METRIC_EXPORT_INTERVAL"
	envTimeout         = "OTEL_METRIC_EXPORT_TIMEOUT"
	envMetricsExporter = "OTEL_METRICS_EXPORTER"
	envSDKDisabled     = "OTEL_SDK_DISABLED"
)

// startOTLP pushes the breakers of reg (breakerotel's instruments) over
// OTLP/HTTP to a collector, besides /metrics, when OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set, every
// OTEL_METRIC_EXPORT_INTERVAL milliseconds (default 60000). The other
// OTEL_EXPORTER_OTLP_* variables (headers, TLS, compression, timeout) apply
// as the exporter defines them; the resource has service.name=breakerbox
// unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say otherwise.
//
// It returns a stop func that pushes a last time and shuts the exporter down;
// without an endpoint it does nothing and stop is a no-op. A variable with a
// value the push cannot honour is an error naming it.
func startOTLP(reg *breaker.Registry, log *slog.Logger) (stop func(), err error) {
	noop := func() {}
	endpoint, interval, err := otlpSettings()
	if err != nil || endpoint == "" {
		return noop, err
	}
	ctx := context.Background()
	exp, err := otlpmetrichttp.New(ctx)
	if err != nil {
		return noop, fmt.Errorf("otlp: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "breakerbox")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the default
		resource.WithTelemetrySDK())
	if err != nil {
		return noop, fmt.Errorf("otlp: resource from OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval))))
	m, err := breakerotel.NewMetrics(reg, breakerotel.Config{MeterProvider: mp})
	if err != nil {
		mp.Shutdown(ctx)
		return noop, fmt.Errorf("otlp: %w", err)
	}
	// Failed pushes are reported by the SDK through the global handler;
	// without this they would go to the standard logger, outside breakerbox's
	// log.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("otlp: push failed", slog.String("endpoint", endpoint), slog.String("error", err.Error()))
	}))
	log.Info("pushing metrics over OTLP", slog.String("endpoint", endpoint), slog.Duration("every", interval))
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Shutdown collects and pushes a last time; the instruments'
		// callback must still be registered for that.
		if err := mp.Shutdown(sctx); err != nil {
			log.Warn("otlp: last push on shutdown failed", slog.String("endpoint", endpoint), slog.String("error", err.Error()))
		}
		m.Close()
	}, nil
}

// otlpSettings reads and checks the environment: the endpoint ("" when the
// push is off) and the push interval.
func otlpSettings() (endpoint string, interval time.Duration, err error) {
	if v := os.Getenv(envSDKDisabled); strings.EqualFold(v, "true") {
		return "", 0, nil
	}
	if v := os.Getenv(envMetricsExporter); v == "none" {
		return "", 0, nil
	} else if v != "" && v != "otlp" {
		return "", 0, fmt.Errorf("%s=%q: breakerbox exports metrics over OTLP only (otlp) or not at all (none); Prometheus metrics are on the admin listener's /metrics", envMetricsExporter, v)
	}
	for _, name := range []string{envMetricsEndpoint, envEndpoint} { // the more specific wins
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", 0, fmt.Errorf("%s=%q: want an http:// or https:// URL of the collector, e.g. http://127.0.0.1:4318", name, v)
		}
		endpoint = v
		if name == envEndpoint {
			endpoint = strings.TrimSuffix(v, "/") + "/v1/metrics" // as the exporter does
		}
		break
	}
	if endpoint == "" {
		return "", 0, nil
	}
	for _, name := range []string{envMetricsProtocol, envProtocol} { // the more specific wins
		if v := os.Getenv(name); v == "http/protobuf" {
			break
		} else if v != "" {
			return "", 0, fmt.Errorf("%s=%q: breakerbox pushes OTLP over HTTP with protobuf only: set it to http/protobuf or unset it", name, v)
		}
	}
	interval = 60 * time.Second
	for _, name := range []string{envInterval, envTimeout} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		if ms, err := strconv.Atoi(v); err != nil || ms <= 0 {
			return "", 0, fmt.Errorf("%s=%q: want a positive number of milliseconds, e.g. 15000", name, v)
		} else if name == envInterval {
			interval = time.Duration(ms) * time.Millisecond
		}
	}
	return endpoint, interval, nil
}
