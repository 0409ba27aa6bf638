package redisstate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newFleetB(b *testing.B, srv *redistest.Server, name string, opts redisstate.Options) *redisstate.Fleet {
	opts.URL, opts.Replica, opts.Logger = srv.URL(), name, quiet
	f, err := redisstate.New(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	for deadline := time.Now().Add(5 * time.Second); f.Stats().Degraded; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("fleet did not join")
		}
	}
	return f
}

// BenchmarkClosedSuccess compares a healthy call on a plain local breaker
// with one on a breaker shared by a fleet: the shared one must cost the same,
// since a healthy call never reaches Redis.
func BenchmarkClosedSuccess(b *testing.B) {
	srv := redistest.Start(b)
	f := newFleetB(b, srv, "bench", redisstate.Options{})
	ok := func(context.Context) error { return nil }
	for _, bc := range []struct {
		name string
		sync breaker.Sync
	}{{"local", nil}, {"fleet", f}} {
		b.Run(bc.name, func(b *testing.B) {
			br, err := breaker.New(breaker.Config{Name: "bench-" + bc.name, Sync: bc.sync, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				br.Do(ctx, ok)
			}
		})
	}
}

// BenchmarkOpenPropagation measures how long an OPEN decision takes to
// reach every replica: from the failing call that trips the fleet on one
// replica to the last of two other replicas applying it. One op is one such
// decision; p50 and p99 are over all ops.
func BenchmarkOpenPropagation(b *testing.B) {
	srv := redistest.Start(b)
	const key = "propagation"
	var trips [3]*breaker.Breaker
	applied := make(chan time.Time, 16)
	for i := range trips {
		f := newFleetB(b, srv, "replica-"+string(rune('a'+i)), redisstate.Options{})
		cfg := breaker.Config{Name: key, FailureThreshold: 1, OpenTimeout: time.Minute, Sync: f, Logger: quiet}
		if i > 0 {
			cfg.OnTransition = func(t breaker.Transition) {
				if t.To == breaker.Open {
					applied <- time.Now()
				}
			}
		}
		br, err := breaker.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		trips[i] = br
	}
	waitAll := func(want breaker.State) {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			if trips[0].State() == want && trips[1].State() == want && trips[2].State() == want {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("replicas did not all reach %v", want)
			}
		}
	}
	boom := errors.New("boom")
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		trips[0].Do(context.Background(), func(context.Context) error { return boom })
		var last time.Time
		for range 2 {
			select {
			case last = <-applied:
			case <-time.After(5 * time.Second):
				b.Fatal("OPEN did not reach the other replicas")
			}
		}
		lat = append(lat, last.Sub(start))
		b.StopTimer()
		trips[0].Reset() // fleet-wide: every replica back to CLOSED
		waitAll(breaker.Closed)
		b.StartTimer()
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

// BenchmarkFailureReport measures what a failure costs in Redis work: script
// calls (round trips) and Redis commands (run inside the scripts) per
// failure. "sparse": each failure is counted by Redis before the next one
// happens, the cost of an isolated failure. "burst": failures back to back,
// batched; paced only so that the bounded queue never overflows (a real
// failure is a network call, far slower than this loop).
func BenchmarkFailureReport(b *testing.B) {
	srv := redistest.Start(b)
	f := newFleetB(b, srv, "bench", redisstate.Options{HealthInterval: time.Hour})
	rdb := srv.Client()
	boom := errors.New("boom")
	fail := func(context.Context) error { return boom }
	runs := 0
	for _, sparse := range []bool{true, false} {
		name := map[bool]string{true: "sparse", false: "burst"}[sparse]
		b.Run(name, func(b *testing.B) {
			runs++ // a fresh key per run: -count and b.N probing run this more than once
			key := fmt.Sprintf("failures-%s-%d", name, runs)
			counted := func() uint64 {
				n, _ := rdb.HGet(context.Background(), "breakerbox:{"+key+"}", "fl").Uint64()
				return n
			}
			br, err := breaker.New(breaker.Config{Name: key, FailureThreshold: 1 << 30, Sync: f, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			before := srv.CommandCalls()
			n := uint64(0)
			for b.Loop() {
				br.Do(context.Background(), fail)
				n++
				for sparse && counted() < n {
				}
				for !sparse && f.Stats().Queued > 2048 {
					time.Sleep(10 * time.Microsecond)
				}
			}
			b.StopTimer()
			for deadline := time.Now().Add(10 * time.Second); counted() < n && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if got := counted(); got != n {
				b.Fatalf("Redis counted %d of %d failures", got, n)
			}
			after := srv.CommandCalls()
			var scripts, cmds int64
			for c, k := range after {
				switch d := k - before[c]; c {
				case "evalsha", "eval":
					scripts += d
				case "hget": // the benchmark's own question
				default:
					cmds += d
				}
			}
			b.ReportMetric(float64(scripts)/float64(b.N), "scripts/failure")
			b.ReportMetric(float64(cmds)/float64(b.N), "redis-cmds/failure")
		})
	}
}
