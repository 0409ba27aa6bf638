package breakerotel_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerotel"
)

// The breakers of a registry as OpenTelemetry instruments. Real code passes
// the application's MeterProvider (or none: the global one) with an OTLP or
// Prometheus exporter; a ManualReader shows what an exporter would get.
func ExampleNewMetrics() {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: slog.New(slog.DiscardHandler)}})
	reader := sdkmetric.NewManualReader()
	m, err := breakerotel.NewMetrics(reg, breakerotel.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		panic(err)
	}
	defer m.Close()

	b := reg.MustGet("cloudflare")
	for range breaker.DefaultFailureThreshold + 1 {
		b.Do(context.Background(), func(context.Context) error { return errors.New("HTTP 503") })
	}

	var rm metricdata.ResourceMetrics
	reader.Collect(context.Background(), &rm)
	for _, metric := range rm.ScopeMetrics[0].Metrics {
		sum, ok := metric.Data.(metricdata.Sum[int64])
		if !ok {
			continue
		}
		for _, p := range sum.DataPoints {
			if p.Value == 0 {
				continue
			}
			fmt.Print(metric.Name)
			for _, a := range p.Attributes.ToSlice() {
				fmt.Printf(" %s=%s", a.Key, a.Value.Emit())
			}
			fmt.Println(" ", p.Value)
		}
	}
	// Output:
	// breaker.state breaker.name=cloudflare breaker.state=open  1
	// breaker.calls breaker.name=cloudflare breaker.outcome=failure  5
	// breaker.rejections breaker.name=cloudflare breaker.rejection.reason=open  1
	// breaker.transitions breaker.name=cloudflare breaker.transition.from=closed breaker.transition.to=open  1
}

// A traced call through a breaker: the call that trips it gets a
// breaker.transition event, the next one a breaker.rejected event.
func ExampleDo() {
	recorder := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)).Tracer("example")
	b, _ := breaker.New(breaker.Config{Name: "smtp", FailureThreshold: 1, Logger: slog.New(slog.DiscardHandler)})

	for range 2 {
		ctx, span := tracer.Start(context.Background(), "send")
		breakerotel.Do(ctx, b, func(context.Context) error { return errors.New("421 service not available") })
		span.End()
	}
	for _, span := range recorder.Ended() {
		for _, ev := range span.Events() {
			fmt.Println(span.Name(), ev.Name)
		}
	}
	// Output:
	// send breaker.transition
	// send breaker.rejected
}
