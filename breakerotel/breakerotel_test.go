package breakerotel_test

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/breakerotel"
)

var errBoom = errors.New("boom")

func fail(context.Context) error { return errBoom }
func ok(context.Context) error   { return nil }

// newRegistry: 2 consecutive failures open a breaker for a minute; one
// successful probe closes it.
func newRegistry(t *testing.T, profiles map[string]breaker.Config) (*breaker.Registry, *breakertest.Clock) {
	t.Helper()
	clock := breakertest.NewClock()
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default:  breaker.Config{FailureThreshold: 2, OpenTimeout: time.Minute, HalfOpenSuccesses: 1, Clock: clock, Logger: slog.New(slog.DiscardHandler)},
		Profiles: profiles,
	})
	if err != nil {
		t.Fatal(err)
	}
	return reg, clock
}

// collect returns every data point as "instrument{attr=value,...}" → value,
// attributes sorted, with the instrument's kind checked on the way.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	points := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != breakerotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, breakerotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				wantMonotonic := m.Name != "breaker.state"
				if d.IsMonotonic != wantMonotonic || d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: monotonic %v, temporality %v; want monotonic %v, cumulative", m.Name, d.IsMonotonic, d.Temporality, wantMonotonic)
				}
				for _, p := range d.DataPoints {
					points[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					points[key(m.Name, p.Attributes)] = p.Value
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return points
}

func key(name string, set attribute.Set) string {
	var kv []string
	for _, a := range set.ToSlice() {
		kv = append(kv, string(a.Key)+"="+a.Value.Emit())
	}
	sort.Strings(kv)
	return name + "{" + strings.Join(kv, ",") + "}"
}

func newMetrics(t *testing.T, reg *breaker.Registry) (*breakerotel.Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := breakerotel.NewMetrics(reg, breakerotel.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

func TestMetricsReportEveryBreakerFromItsSnapshot(t *testing.T) {
	reg, clock := newRegistry(t, map[string]breaker.Config{"cloudflare": {CountSuccesses: true}})
	m, reader := newMetrics(t, reg)
	defer m.Close()
	ctx := context.Background()

	cf := reg.MustGet("cloudflare") // CLOSED: 3 successes, 1 failure, 1 ignored
	for range 3 {
		cf.Do(ctx, ok)
	}
	cf.Do(ctx, fail)
	cf.Do(ctx, func(context.Context) error { return context.Canceled })

	nc := reg.MustGet("namecheap") // HALF_OPEN with its one probe slot taken, 1 call rejected for it
	nc.Do(ctx, fail)
	nc.Do(ctx, fail)
	nc.Do(ctx, ok) // rejected while OPEN
	clock.Advance(time.Minute)
	if _, err := nc.Allow(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Allow(); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("second probe: %v, want a rejection", err)
	}

	g := reg.MustGet("genesys/eu-west-1") // OPEN for 45 more seconds
	g.Do(ctx, fail)
	g.Do(ctx, fail)
	clock.Advance(15 * time.Second)

	reg.MustGet("smtp").ForceOpen()

	got := collect(t, reader)
	want := map[string]float64{
		"breaker.calls{breaker.name=cloudflare,breaker.outcome=success}":                                             3,
		"breaker.calls{breaker.name=cloudflare,breaker.outcome=failure}":                                             1,
		"breaker.calls{breaker.name=cloudflare,breaker.outcome=ignored}":                                             1,
		"breaker.calls{breaker.name=namecheap,breaker.outcome=failure}":                                              2,
		"breaker.rejections{breaker.name=namecheap,breaker.rejection.reason=open}":                                   1,
		"breaker.rejections{breaker.name=namecheap,breaker.rejection.reason=half_open_full}":                         1,
		"breaker.state{breaker.name=cloudflare,breaker.state=closed}":                                                1,
		"breaker.state{breaker.name=cloudflare,breaker.state=open}":                                                  0,
		"breaker.state{breaker.name=namecheap,breaker.state=half_open}":                                              1,
		"breaker.state{breaker.name=genesys/eu-west-1,breaker.state=open}":                                           1,
		"breaker.state{breaker.name=smtp,breaker.state=forced_open}":                                                 1,
		"breaker.state{breaker.name=smtp,breaker.state=closed}":                                                      0,
		"breaker.transitions{breaker.name=namecheap,breaker.transition.from=closed,breaker.transition.to=open}":      1,
		"breaker.transitions{breaker.name=namecheap,breaker.transition.from=open,breaker.transition.to=half_open}":   1,
		"breaker.transitions{breaker.name=namecheap,breaker.transition.from=half_open,breaker.transition.to=closed}": 0,
		"breaker.transitions{breaker.name=cloudflare,breaker.transition.from=closed,breaker.transition.to=open}":     0,
		"breaker.transitions{breaker.name=smtp,breaker.transition.from=closed,breaker.transition.to=forced_open}":    1,
		"breaker.retry_after{breaker.name=genesys/eu-west-1}":                                                        45,
		"breaker.retry_after{breaker.name=namecheap}":                                                                45, // the probe's lease (ProbeTimeout = OpenTimeout), taken 15s ago
		"breaker.retry_after{breaker.name=cloudflare}":                                                               0,
	}
	for k, v := range want {
		if g, found := got[k]; !found || g != v {
			t.Errorf("%s = %v (reported: %v), want %v", k, g, found, v)
		}
	}
	for _, absent := range []string{
		// successes are not counted without CountSuccesses: no series rather than a 0 that reads as "no traffic"
		"breaker.calls{breaker.name=namecheap,breaker.outcome=success}",
		// operator transitions appear once they happened
		"breaker.transitions{breaker.name=cloudflare,breaker.transition.from=closed,breaker.transition.to=forced_open}",
	} {
		if _, found := got[absent]; found {
			t.Errorf("%s reported, want absent", absent)
		}
	}
	if n := countPrefix(got, "breaker.state{"); n != 4*5 {
		t.Errorf("%d breaker.state points, want 4 breakers × 5 states", n)
	}
}

func countPrefix(points map[string]float64, prefix string) int {
	n := 0
	for k := range points {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// Breakers created after NewMetrics appear at the next collection; removed
// ones disappear; after Close nothing is reported.
func TestMetricsFollowTheRegistry(t *testing.T) {
	reg, _ := newRegistry(t, nil)
	m, reader := newMetrics(t, reg)
	if got := collect(t, reader); len(got) != 0 {
		t.Fatalf("empty registry reported %d points", len(got))
	}
	reg.Get("late")
	if got := collect(t, reader); got["breaker.state{breaker.name=late,breaker.state=closed}"] != 1 {
		t.Fatalf("breaker created after NewMetrics not reported: %v", got)
	}
	reg.Remove("late")
	if got := collect(t, reader); countPrefix(got, "breaker.") != 0 {
		t.Fatalf("removed breaker still reported: %v", got)
	}
	reg.Get("again")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, reader); len(got) != 0 {
		t.Fatalf("reported after Close: %v", got)
	}
}

func TestNewMetricsNeedsARegistry(t *testing.T) {
	if _, err := breakerotel.NewMetrics(nil, breakerotel.Config{}); err == nil || !strings.Contains(err.Error(), "registry") {
		t.Fatalf("err = %v, want one naming the registry", err)
	}
}

func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, sr
}

// traced runs one Do in its own span and returns the ended span.
func traced(t *testing.T, tp *sdktrace.TracerProvider, sr *tracetest.SpanRecorder, b *breaker.Breaker, fn func(context.Context) error) (sdktrace.ReadOnlySpan, error) {
	t.Helper()
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	err := breakerotel.Do(ctx, b, fn)
	span.End()
	ended := sr.Ended()
	return ended[len(ended)-1], err
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestDoRecordsTransitionsAndRejectionsOnTheSpan(t *testing.T) {
	tp, sr := newTracer(t)
	reg, clock := newRegistry(t, nil)
	b := reg.MustGet("genesys/eu-west-1")

	span, _ := traced(t, tp, sr, b, fail)
	if len(span.Events()) != 0 || len(span.Attributes()) != 0 {
		t.Fatalf("a failure that did not trip: events %v, attributes %v; want none", span.Events(), span.Attributes())
	}

	span, err := traced(t, tp, sr, b, fail) // trips
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want fn's", err)
	}
	if ev := span.Events(); len(ev) != 1 || ev[0].Name != breakerotel.TransitionEvent {
		t.Fatalf("tripping call: events %v, want one %s", ev, breakerotel.TransitionEvent)
	}
	wantEvent := map[string]string{"breaker.name": "genesys/eu-west-1", "breaker.transition.from": "closed",
		"breaker.transition.to": "open", "breaker.transition.reason": "failure_threshold"}
	if got := attrs(span.Events()[0].Attributes); !equal(got, wantEvent) {
		t.Errorf("transition event attributes %v, want %v", got, wantEvent)
	}
	if !span.Events()[0].Time.Equal(clock.Now()) {
		t.Errorf("transition event at %v, want the transition's time %v", span.Events()[0].Time, clock.Now())
	}
	if got := attrs(span.Attributes()); !equal(got, map[string]string{"breaker.name": "genesys/eu-west-1", "breaker.state": "open"}) {
		t.Errorf("span attributes %v", got)
	}

	clock.Advance(20 * time.Second)
	span, err = traced(t, tp, sr, b, func(context.Context) error { t.Fatal("ran while open"); return nil })
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("err = %v, want a rejection", err)
	}
	if ev := span.Events(); len(ev) != 1 || ev[0].Name != breakerotel.RejectedEvent {
		t.Fatalf("rejected call: events %v, want one %s", ev, breakerotel.RejectedEvent)
	}
	wantEvent = map[string]string{"breaker.name": "genesys/eu-west-1", "breaker.state": "open", "breaker.retry_after": "40"}
	if got := attrs(span.Events()[0].Attributes); !equal(got, wantEvent) {
		t.Errorf("rejection event attributes %v, want %v", got, wantEvent)
	}

	clock.Advance(40 * time.Second) // HALF_OPEN: the probe's success closes
	span, _ = traced(t, tp, sr, b, ok)
	if got := attrs(span.Events()[0].Attributes); got["breaker.transition.to"] != "closed" || got["breaker.transition.reason"] != "probes_succeeded" {
		t.Errorf("closing probe: event attributes %v, want to closed by probes_succeeded", got)
	}
}

// A rejection from a breaker inside fn is fn's error, not a rejection by b.
func TestDoTellsItsBreakersRejectionFromFns(t *testing.T) {
	tp, sr := newTracer(t)
	reg, _ := newRegistry(t, nil)
	inner := reg.MustGet("inner")
	inner.ForceOpen()
	span, err := traced(t, tp, sr, reg.MustGet("outer"), func(ctx context.Context) error { return inner.Do(ctx, ok) })
	if !errors.Is(err, breaker.ErrOpen) || len(span.Events()) != 0 {
		t.Fatalf("err %v, events %v: want inner's rejection and no event for outer", err, span.Events())
	}
}

func TestDoWithoutARecordingSpanIsBreakerDo(t *testing.T) {
	reg, _ := newRegistry(t, nil)
	b := reg.MustGet("x")
	ran := 0
	for range 3 {
		breakerotel.Do(context.Background(), b, func(context.Context) error { ran++; return errBoom })
	}
	if ran != 2 || b.State() != breaker.Open {
		t.Fatalf("ran %d, state %v: want 2 calls then open", ran, b.State())
	}
	v, err := breakerotel.Call(context.Background(), reg.MustGet("y"), func(context.Context) (int, error) { return 7, nil })
	if v != 7 || err != nil {
		t.Fatalf("Call = %v, %v", v, err)
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
