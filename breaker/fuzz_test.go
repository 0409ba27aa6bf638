package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

// fuzzConfigFieldRE finds the field an error names: "Config.<Field>".
var fuzzConfigFieldRE = regexp.MustCompile(`Config\.([A-Za-z]+(?:\.[A-Za-z]+)?)`)

// fuzzConfigFields are Config's fields, as an error may name them.
var fuzzConfigFields = []string{
	"Name", "FailureThreshold", "FailureRate", "FailureRate.Threshold", "FailureRate.MinCalls",
	"FailureRate.Window", "FailureRate.Bucket", "FailureRate.SlowCall", "OpenTimeout", "OpenBackoff",
	"OpenBackoff.Multiplier", "OpenBackoff.Max", "OpenBackoff.Jitter", "HalfOpenSuccesses",
	"HalfOpenProbes", "ProbeTimeout", "Classify", "Clock", "Logger", "OnTransition",
}

// fuzzConfigOracle judges a config from Config's doc comments alone. It
// returns the fields that make it invalid (any one of them may be named in
// the error), and maybe: fields whose values the docs do not decide on
// (arithmetic overflow of a default, a zero-width default bucket, an infinite
// multiplier); a config with only those may be accepted or rejected.
func fuzzConfigOracle(c breaker.Config) (bad, maybe []string) {
	if c.FailureThreshold < 0 {
		bad = append(bad, "FailureThreshold")
	}
	if c.FailureRate != nil && c.FailureThreshold != 0 {
		bad = append(bad, "FailureThreshold", "FailureRate")
	}
	if c.OpenTimeout < 0 {
		bad = append(bad, "OpenTimeout")
	}
	if c.HalfOpenSuccesses < 0 {
		bad = append(bad, "HalfOpenSuccesses")
	}
	if c.HalfOpenProbes < 0 {
		bad = append(bad, "HalfOpenProbes")
	}
	if c.ProbeTimeout < 0 {
		bad = append(bad, "ProbeTimeout")
	}
	if r := c.FailureRate; r != nil {
		if !(r.Threshold > 0 && r.Threshold <= 1) {
			bad = append(bad, "FailureRate.Threshold")
		}
		if r.MinCalls < 0 {
			bad = append(bad, "FailureRate.MinCalls")
		}
		if r.Window < 0 {
			bad = append(bad, "FailureRate.Window")
		}
		if r.Bucket < 0 {
			bad = append(bad, "FailureRate.Bucket")
		}
		if r.SlowCall < 0 {
			bad = append(bad, "FailureRate.SlowCall")
		}
		if r.Window >= 0 && r.Bucket >= 0 {
			w, b := r.Window, r.Bucket
			if w == 0 {
				w = 60 * time.Second
			}
			switch {
			case b == 0 && w%10 != 0:
				// The default bucket, Window/10, does not divide a Window
				// that is not a multiple of 10ns (or is 0 for Window <
				// 10ns): rejecting it and falling back to one bucket of
				// width Window are both acceptable.
				maybe = append(maybe, "FailureRate.Window", "FailureRate.Bucket")
			case b == 0:
				// Window/10 divides Window: valid.
			case w < b || w%b != 0 || w/b > 1000:
				bad = append(bad, "FailureRate.Window", "FailureRate.Bucket")
			}
		}
	}
	if bo := c.OpenBackoff; bo != nil {
		switch {
		case math.IsInf(bo.Multiplier, 1):
			maybe = append(maybe, "OpenBackoff.Multiplier")
		case bo.Multiplier != 0 && !(bo.Multiplier > 1):
			bad = append(bad, "OpenBackoff.Multiplier")
		}
		if !(bo.Jitter >= 0 && bo.Jitter < 1) {
			bad = append(bad, "OpenBackoff.Jitter")
		}
		if bo.Max < 0 {
			bad = append(bad, "OpenBackoff.Max")
		}
		if c.OpenTimeout >= 0 && bo.Max >= 0 {
			ot := c.OpenTimeout
			if ot == 0 {
				ot = 60 * time.Second
			}
			switch {
			case bo.Max != 0 && bo.Max < ot:
				bad = append(bad, "OpenBackoff.Max", "OpenTimeout")
			case bo.Max == 0 && ot > math.MaxInt64/10:
				// The default 10 × OpenTimeout overflows.
				maybe = append(maybe, "OpenBackoff.Max", "OpenTimeout")
			}
		}
	}
	return bad, maybe
}

func FuzzConfigValidate(f *testing.F) {
	// threshold, openTimeout, halfOpenSuccesses, halfOpenProbes, probeTimeout,
	// rate?, rate.Threshold, rate.MinCalls, rate.Window, rate.Bucket, rate.SlowCall,
	// backoff?, backoff.Multiplier, backoff.Max, backoff.Jitter
	f.Add(0, int64(0), 0, 0, int64(0), false, 0.0, 0, int64(0), int64(0), int64(0), false, 0.0, int64(0), 0.0)
	f.Add(10, int64(60*time.Second), 3, 1, int64(0), false, 0.0, 0, int64(0), int64(0), int64(0), false, 0.0, int64(0), 0.0)
	f.Add(-1, int64(-1), -1, -1, int64(-1), false, 0.0, 0, int64(0), int64(0), int64(0), false, 0.0, int64(0), 0.0)
	f.Add(0, int64(time.Second), 1, 2, int64(time.Second), true, 0.5, 4, int64(10*time.Second), int64(time.Second), int64(time.Second), true, 2.0, int64(time.Minute), 0.1)
	f.Add(3, int64(time.Second), 1, 2, int64(0), true, 0.5, 4, int64(0), int64(0), int64(0), false, 0.0, int64(0), 0.0)
	f.Add(0, int64(0), 0, 0, int64(0), true, 1.5, -1, int64(time.Second), int64(3*time.Second), int64(-1), true, 1.0, int64(time.Second), 1.0)
	f.Add(0, int64(0), 0, 0, int64(0), true, math.NaN(), 0, int64(7*time.Second), int64(2*time.Second), int64(0), true, math.NaN(), int64(-1), math.NaN())
	f.Add(0, int64(0), 0, 0, int64(0), true, 0.5, 0, int64(time.Second), int64(time.Microsecond), int64(0), true, math.Inf(1), int64(0), -0.5)
	f.Add(0, int64(math.MaxInt64), 0, 0, int64(math.MaxInt64), false, 0.0, 0, int64(0), int64(0), int64(0), true, 0.0, int64(0), 0.0)
	// Found by this target: a window shorter than 10ns with the default
	// bucket (Window/10 = 0) made New divide by zero. New must return an
	// error (or pick a bucket), never panic. Also a window of 75ns with the
	// default bucket (7ns does not divide it).
	f.Add(0, int64(0), 0, 0, int64(0), true, 0.5, 0, int64(5), int64(0), int64(0), false, 0.0, int64(0), 0.0)
	f.Add(0, int64(0), 0, 0, int64(0), true, 1.0, 0, int64(75), int64(0), int64(0), false, 0.0, int64(0), 0.0)

	f.Fuzz(func(t *testing.T, threshold int, openTimeout int64, hoSucc, hoProbes int, probeTimeout int64,
		rate bool, rateThr float64, minCalls int, window, bucket, slow int64,
		backoff bool, mult float64, bmax int64, jitter float64) {
		clk := breakertest.NewClock()
		cfg := breaker.Config{
			Name: "fuzz", FailureThreshold: threshold, OpenTimeout: time.Duration(openTimeout),
			HalfOpenSuccesses: hoSucc, HalfOpenProbes: hoProbes, ProbeTimeout: time.Duration(probeTimeout),
			Clock: clk, Logger: fuzzQuietLogger,
		}
		if rate {
			cfg.FailureRate = &breaker.FailureRate{Threshold: rateThr, MinCalls: minCalls, Window: time.Duration(window),
				Bucket: time.Duration(bucket), SlowCall: time.Duration(slow)}
		}
		if backoff {
			cfg.OpenBackoff = &breaker.Backoff{Multiplier: mult, Max: time.Duration(bmax), Jitter: jitter}
		}
		desc := fmt.Sprintf("Config{FailureThreshold:%d OpenTimeout:%d HalfOpenSuccesses:%d HalfOpenProbes:%d ProbeTimeout:%d FailureRate:%+v OpenBackoff:%+v}",
			threshold, openTimeout, hoSucc, hoProbes, probeTimeout, cfg.FailureRate, cfg.OpenBackoff)

		var b *breaker.Breaker
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("New(%s) panicked: %v", desc, p)
				}
			}()
			b, err = breaker.New(cfg)
		}()
		if verr := cfg.Validate(); (verr == nil) != (err == nil) || (err != nil && verr.Error() != err.Error()) {
			t.Fatalf("%s: Validate() = %v, New error = %v; want the same", desc, verr, err)
		}

		bad, maybe := fuzzConfigOracle(cfg)
		if err != nil {
			m := fuzzConfigFieldRE.FindStringSubmatch(err.Error())
			if m == nil || !slices.Contains(fuzzConfigFields, m[1]) {
				t.Fatalf("%s: error %q does not name a Config field", desc, err)
			}
			if len(bad)+len(maybe) == 0 {
				t.Fatalf("%s: rejected (%v), but every field is in its documented range", desc, err)
			}
			if !slices.Contains(bad, m[1]) && !slices.Contains(maybe, m[1]) {
				t.Fatalf("%s: error names %s, but the invalid fields are %v (questionable: %v)", desc, m[1], bad, maybe)
			}
			if b != nil {
				t.Fatalf("%s: New returned a breaker and an error", desc)
			}
			return
		}
		if len(bad) > 0 {
			t.Fatalf("%s: accepted, but %v are out of their documented range", desc, bad)
		}

		// Accepted: defaults filled in, and the breaker works without panicking.
		rc := b.Config()
		if rc.FailureRate == nil && rc.FailureThreshold < 1 || rc.OpenTimeout <= 0 || rc.HalfOpenSuccesses < 1 ||
			rc.HalfOpenProbes < 1 || rc.ProbeTimeout <= 0 {
			t.Fatalf("%s: resolved config has a non-positive field: %+v", desc, rc)
		}
		fuzzExercise(t, b, clk, desc)
	})
}

var fuzzQuietLogger = slog.New(slog.DiscardHandler)

// fuzzExercise drives an accepted breaker through a few calls and, if it
// trips within a bounded number of failures, through OPEN and HALF_OPEN.
func fuzzExercise(t *testing.T, b *breaker.Breaker, clk *breakertest.Clock, desc string) {
	boom := errors.New("boom")
	ctx := context.Background()
	_ = b.Do(ctx, func(context.Context) error { return nil })
	for i := 0; i < 64 && b.State() == breaker.Closed; i++ {
		_ = b.Do(ctx, func(context.Context) error { return boom })
	}
	if b.State() != breaker.Open {
		return
	}
	err := b.Do(ctx, func(context.Context) error { t.Fatalf("%s: function ran while OPEN", desc); return nil })
	if d, ok := breaker.RetryAfter(err); !errors.Is(err, breaker.ErrOpen) || !ok || d < 0 {
		t.Fatalf("%s: rejection while OPEN = %v (RetryAfter %v, %v)", desc, err, d, ok)
	}
	s := b.Snapshot()
	if s.OpenUntil.After(clk.Now()) && s.OpenUntil.Sub(clk.Now()) < 24*time.Hour {
		clk.Set(s.OpenUntil)
		if b.State() != breaker.HalfOpen {
			t.Fatalf("%s: state %v at the end of the open timeout, want half_open", desc, b.State())
		}
		tk, err := b.Allow()
		if err != nil {
			t.Fatalf("%s: first probe rejected: %v", desc, err)
		}
		tk.Report(breaker.Success)
	}
	_ = b.Snapshot()
	b.Reset()
}

// FuzzModel runs the model check of model_test.go on operations decoded from
// the fuzz input. The first byte picks a configuration from modelConfigs or,
// with its top bit set, builds one from the next bytes.
func FuzzModel(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte(strings.Repeat("\x02\x10\xff\x80\x40\x20", 40)))
	f.Add([]byte(strings.Repeat("\x06\x01\x90\x03\xc0\xee\x11", 60)))
	f.Add([]byte("\x87\x02\x05\x03\x02\x01\x01" + strings.Repeat("\x00\x01\x02\x03\xf0\xf8\xfc\xfe\xff", 50)))
	f.Add([]byte("\x81\x00\x00\x00\x00\x00\x00" + strings.Repeat("\x91\x13\x37\x42\x99\xaa\x05", 50)))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		name, cfg, rest := fuzzModelConfig(data)
		r := newModelRun(t, name, fmt.Sprintf("fuzz input %q", data), cfg)
		src := &byteSource{data: rest}
		for i := 0; i < 4000 && !src.done(); i++ {
			r.exec(r.nextOp(src))
		}
	})
}

// fuzzModelConfig picks or builds the configuration for FuzzModel.
func fuzzModelConfig(data []byte) (string, breaker.Config, []byte) {
	if data[0]&0x80 == 0 {
		c := modelConfigs[int(data[0])%len(modelConfigs)]
		return c.name, c.cfg, data[1:]
	}
	var p [6]byte
	n := copy(p[:], data[1:])
	rest := data[1+n:]
	ot := time.Duration(1+int(p[1])%60) * time.Second
	cfg := breaker.Config{
		OpenTimeout:       ot,
		HalfOpenSuccesses: 1 + int(p[2])%4,
		HalfOpenProbes:    1 + int(p[3])%4,
	}
	if p[4]%3 != 0 {
		cfg.ProbeTimeout = time.Duration(1+int(p[4])%90) * time.Second
	}
	if p[5]&1 != 0 {
		cfg.OpenBackoff = &breaker.Backoff{Multiplier: []float64{1.5, 2, 3}[int(p[5]>>1)%3], Max: ot * time.Duration(1+int(p[5]>>3)%16)}
	}
	if p[0]&1 == 0 {
		cfg.FailureThreshold = 1 + int(p[0]>>1)%8
	} else {
		bucket := time.Duration(1+int(p[0]>>1)%3) * time.Second
		cfg.FailureRate = &breaker.FailureRate{
			Threshold: []float64{0.25, 0.5, 0.75, 1}[int(p[0]>>3)%4],
			MinCalls:  1 + int(p[0]>>5)%6,
			Window:    bucket * time.Duration(1+int(p[1])%6),
			Bucket:    bucket,
		}
		if p[2]&0x80 != 0 {
			cfg.FailureRate.SlowCall = time.Duration(1+int(p[2]>>4)%8) * 500 * time.Millisecond
		}
	}
	return fmt.Sprintf("fuzz-built%+v", p), cfg, rest
}
