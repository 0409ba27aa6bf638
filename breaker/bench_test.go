package breaker_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// Benchmarks of the hot paths. Compare with benchstat; bench/ has the same
// scenarios side by side with other libraries.

var (
	ctx     = context.Background()
	okFn    = func(context.Context) error { return nil }
	failFn  = func(context.Context) error { return errBoom }
	cancFn  = func(context.Context) error { return context.Canceled }
	gate    atomic.Uint64
	sinkErr error
)

// baseline is the floor any breaker pays: a call through a wrapper that
// loads one atomic word, then the protected function.
//
//go:noinline
func baseline(ctx context.Context, fn func(context.Context) error) error {
	if gate.Load() != 0 {
		return errBoom
	}
	return fn(ctx)
}

func newBench(b *testing.B, cfg breaker.Config) *breaker.Breaker {
	cfg.Logger = discard
	br, err := breaker.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return br
}

func BenchmarkBaseline(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = baseline(ctx, okFn)
	}
}

func BenchmarkBaselineParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			baseline(ctx, okFn)
		}
	})
}

func BenchmarkClosedSuccess(b *testing.B) {
	br := newBench(b, breaker.Config{})
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, okFn)
	}
}

func BenchmarkClosedSuccessParallel(b *testing.B) {
	br := newBench(b, breaker.Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			br.Do(ctx, okFn)
		}
	})
}

func BenchmarkClosedSuccessCounted(b *testing.B) {
	br := newBench(b, breaker.Config{CountSuccesses: true})
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, okFn)
	}
}

// Counting under RunParallel: the counter is striped per goroutine, so this
// is no slower than the serial BenchmarkClosedSuccessCounted.
func BenchmarkClosedSuccessCountedParallel(b *testing.B) {
	br := newBench(b, breaker.Config{CountSuccesses: true})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			br.Do(ctx, okFn)
		}
	})
}

func BenchmarkClosedSuccessTwoStep(b *testing.B) {
	br := newBench(b, breaker.Config{})
	b.ReportAllocs()
	for b.Loop() {
		t, err := br.Allow()
		if err != nil {
			b.Fatal(err)
		}
		t.Done(nil)
	}
}

func BenchmarkCall(b *testing.B) {
	br := newBench(b, breaker.Config{})
	fn := func(context.Context) (int, error) { return 1, nil }
	b.ReportAllocs()
	for b.Loop() {
		breaker.Call(ctx, br, fn)
	}
}

func BenchmarkFailureUnderThreshold(b *testing.B) {
	br := newBench(b, breaker.Config{FailureThreshold: 1 << 30})
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, failFn)
	}
}

func BenchmarkFailureRatePolicy(b *testing.B) {
	br := newBench(b, breaker.Config{FailureRate: &breaker.FailureRate{Threshold: 1, MinCalls: 1 << 30}})
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, failFn)
	}
}

func BenchmarkIgnoredError(b *testing.B) {
	br := newBench(b, breaker.Config{})
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, cancFn)
	}
}

func BenchmarkRejectOpen(b *testing.B) {
	br := newBench(b, breaker.Config{OpenTimeout: time.Hour})
	br.ForceOpen()
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, okFn)
	}
}

func BenchmarkRejectOpenParallel(b *testing.B) {
	br := newBench(b, breaker.Config{OpenTimeout: time.Hour})
	br.ForceOpen()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			br.Do(ctx, okFn)
		}
	})
}

// A probe admitted and released each iteration; HalfOpenSuccesses is so high
// the breaker stays HALF_OPEN.
func BenchmarkHalfOpenProbe(b *testing.B) {
	clk := newClock()
	br := newBench(b, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 1 << 30, Clock: clk})
	br.Do(ctx, failFn)
	clk.Advance(time.Minute)
	if br.State() != breaker.HalfOpen {
		b.Fatal("not half-open")
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, okFn)
	}
}

// The same with the system clock, as in production: the probe's lease
// reads time.Now once, and no timer is allocated per probe.
func BenchmarkHalfOpenProbeSystemClock(b *testing.B) {
	br := newBench(b, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 1 << 30, OpenTimeout: time.Millisecond, ProbeTimeout: time.Hour})
	br.Do(ctx, failFn)
	for br.State() != breaker.HalfOpen {
		<-br.Changed() // the real open timeout: the breaker's timer moves it
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkErr = br.Do(ctx, okFn)
	}
}

func BenchmarkRegistryGet(b *testing.B) {
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discard}})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "genesys/region-" + strconv.Itoa(i)
		get(b, reg, keys[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_, _ = reg.Get(keys[i%len(keys)]) // no Configure: cannot fail
		i++
	}
}
