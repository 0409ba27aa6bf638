package retry

import (
	"testing"
	"time"
)

func TestBackoffCeilingGrowsByMultiplierUpToMaxBackoff(t *testing.T) {
	p, err := Policy{InitialBackoff: 100 * time.Millisecond, Multiplier: 2, MaxBackoff: time.Second}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	l := newLoop(&p)
	want := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000}
	for i, w := range want {
		if got := l.ceiling(); got != w*time.Millisecond {
			t.Fatalf("ceiling of retry %d = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
}

func TestBackoffCeilingWithMultiplierOneStaysFlat(t *testing.T) {
	p, _ := Policy{InitialBackoff: 50 * time.Millisecond, Multiplier: 1}.resolve()
	l := newLoop(&p)
	for i := range 5 {
		if got := l.ceiling(); got != 50*time.Millisecond {
			t.Fatalf("ceiling of retry %d = %v, want 50ms", i+1, got)
		}
	}
}

func TestFullJitterDrawsAcrossZeroToCeiling(t *testing.T) {
	p, _ := Policy{InitialBackoff: time.Second, MaxBackoff: time.Second}.resolve()
	l := newLoop(&p)
	low, high := false, false
	for range 1000 {
		d := l.jitter()
		if d < 0 || d > time.Second {
			t.Fatalf("jitter = %v, want within [0, 1s]", d)
		}
		low = low || d < 250*time.Millisecond
		high = high || d > 750*time.Millisecond
	}
	// Full jitter spreads over the whole interval, not around its middle.
	if !low || !high {
		t.Fatalf("1000 draws never fell in the lowest or highest quarter of [0, 1s] (low=%v high=%v)", low, high)
	}
}

func TestBackoffCeilingSaturatesAtMaxBackoffInsteadOfOverflowing(t *testing.T) {
	max := time.Duration(1<<63 - 1)
	p, err := Policy{InitialBackoff: time.Hour, Multiplier: 1e6, MaxBackoff: max, MaxAttempts: 1 << 20}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	l := newLoop(&p)
	prev := time.Duration(0)
	for i := range 200 {
		got := l.ceiling()
		if got < prev || got <= 0 {
			t.Fatalf("ceiling of retry %d = %v after %v: must grow monotonically and stay positive", i+1, got, prev)
		}
		prev = got
	}
	if prev != max {
		t.Fatalf("ceiling after 200 retries = %v, want MaxBackoff %v", prev, max)
	}
}
