package breakerotel_test

import (
	"context"
	"log/slog"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerotel"
)

// BenchmarkDo compares a successful call through b.Do with breakerotel.Do
// without a span in ctx (the cost of looking for one) and inside a
// recording span (the call's own span is not part of the measure).
func BenchmarkDo(b *testing.B) {
	br, _ := breaker.New(breaker.Config{Name: "x", Logger: slog.New(slog.DiscardHandler)})
	okFn := func(context.Context) error { return nil }
	b.Run("breaker.Do", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			br.Do(ctx, okFn)
		}
	})
	b.Run("no-span", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			breakerotel.Do(ctx, br, okFn)
		}
	})
	b.Run("recording-span", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider()
		defer tp.Shutdown(context.Background())
		ctx, span := tp.Tracer("bench").Start(context.Background(), "call")
		defer span.End()
		b.ReportAllocs()
		for b.Loop() {
			breakerotel.Do(ctx, br, okFn)
		}
	})
}

// BenchmarkCollect measures one collection of 100 breakers' instruments:
// the cost paid per export interval, never by the calls.
func BenchmarkCollect(b *testing.B) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: slog.New(slog.DiscardHandler)}})
	for i := range 100 {
		reg.Get("svc-" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
	}
	reader := sdkmetric.NewManualReader()
	m, _ := breakerotel.NewMetrics(reg, breakerotel.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	defer m.Close()
	var rm metricdata.ResourceMetrics
	b.ReportAllocs()
	for b.Loop() {
		if err := reader.Collect(context.Background(), &rm); err != nil {
			b.Fatal(err)
		}
	}
}
