package breaker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// The public surface a v1 freezes: accessors instead of exported fields
// whose type depends on an unexported constant, errors instead of bools,
// constructors users need in their own tests.

func TestStatesListsEveryStateOnceInOrder(t *testing.T) {
	states := breaker.States()
	for i, s := range states {
		if int(s) != i {
			t.Fatalf("States()[%d] = %v", i, s)
		}
		if p, err := breaker.ParseState(s.String()); err != nil || p != s {
			t.Fatalf("ParseState(%q) = %v, %v", s, p, err)
		}
	}
	if len(states) != 5 {
		t.Fatalf("States() = %v, want the 5 states", states)
	}
	states[0] = breaker.Open // the caller's copy
	if breaker.States()[0] != breaker.Closed {
		t.Fatal("States() shares its slice with callers")
	}
}

func TestSnapshotTransitionCount(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 1})
	h.fail(1)
	h.clk.Advance(time.Minute)
	h.fail(1) // the probe fails
	h.clk.Advance(time.Minute)
	h.succeed(1)
	s := h.b.Snapshot()
	want := map[[2]breaker.State]uint64{
		{breaker.Closed, breaker.Open}:     1,
		{breaker.Open, breaker.HalfOpen}:   2,
		{breaker.HalfOpen, breaker.Open}:   1,
		{breaker.HalfOpen, breaker.Closed}: 1,
	}
	for _, from := range breaker.States() {
		for _, to := range breaker.States() {
			if got := s.TransitionCount(from, to); got != want[[2]breaker.State{from, to}] {
				t.Errorf("TransitionCount(%v, %v) = %d, want %d", from, to, got, want[[2]breaker.State{from, to}])
			}
		}
	}
	if got := s.TransitionCount(9, breaker.Open); got != 0 {
		t.Errorf("TransitionCount(9, open) = %d, want 0", got)
	}
}

func TestNewOpenErrorIsARejection(t *testing.T) {
	var err error = breaker.NewOpenError("cloudflare", breaker.Open, 41*time.Second)
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatal("NewOpenError does not satisfy errors.Is(err, ErrOpen)")
	}
	if d, ok := breaker.RetryAfter(err); !ok || d != 41*time.Second {
		t.Fatalf("RetryAfter = %v, %v; want 41s", d, ok)
	}
	if got, want := err.Error(), `breaker "cloudflare": circuit open, probe allowed in 41s`; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if d := breaker.NewOpenError("x", breaker.ForcedOpen, -time.Second).RetryAfter(); d != 0 {
		t.Fatalf("negative RetryAfter kept: %v", d)
	}
}

func TestMergeOffTurnsABaseFlagOff(t *testing.T) {
	base := breaker.Config{DryRun: true, CountSuccesses: true}
	tests := []struct {
		name          string
		profile       breaker.Config
		dryRun, count bool
	}{
		{"Inherits", breaker.Config{}, true, true},
		{"OffDryRun", breaker.Config{Off: breaker.FlagDryRun}, false, true},
		{"OffBoth", breaker.Config{Off: breaker.FlagDryRun | breaker.FlagCountSuccesses}, false, false},
	}
	for _, tt := range tests {
		c := tt.profile.Merge(base)
		if c.DryRun != tt.dryRun || c.CountSuccesses != tt.count {
			t.Errorf("%s: DryRun %v, CountSuccesses %v; want %v, %v", tt.name, c.DryRun, c.CountSuccesses, tt.dryRun, tt.count)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: merged config invalid: %v", tt.name, err)
		}
	}
	// Through a registry: the profile's breaker is not in dry run.
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{DryRun: true, Logger: discard},
		Profiles: map[string]breaker.Config{"live": {Off: breaker.FlagDryRun}}})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := reg.Get("live/eu"); err != nil || b.DryRun() {
		t.Fatalf("profile with Off: FlagDryRun: breaker %v in dry run (%v)", b, err)
	}
	if b, err := reg.Get("other"); err != nil || !b.DryRun() {
		t.Fatalf("default breaker not in dry run (%v)", err)
	}
	for _, bad := range []breaker.Config{{DryRun: true, Off: breaker.FlagDryRun}, {CountSuccesses: true, Off: breaker.FlagCountSuccesses}, {Off: 0x80}} {
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "Config.Off") {
			t.Errorf("Validate(%+v) = %v, want an error naming Config.Off", bad, err)
		}
	}
}

func TestDryRunAndRetryAfterAccessorsAgreeWithSnapshot(t *testing.T) {
	h := newHarness(t, breaker.Config{FailureThreshold: 1, ProbeTimeout: 10 * time.Second})
	check := func(when string) {
		t.Helper()
		s := h.b.Snapshot()
		if h.b.DryRun() != s.DryRun || h.b.RetryAfter() != s.RetryAfter {
			t.Fatalf("%s: DryRun() %v RetryAfter() %v; Snapshot says %v, %v", when, h.b.DryRun(), h.b.RetryAfter(), s.DryRun, s.RetryAfter)
		}
	}
	check("closed")
	h.b.SetDryRun(true)
	check("dry run")
	h.b.SetDryRun(false)
	h.fail(1)
	h.clk.Advance(20 * time.Second)
	check("open")
	if h.b.RetryAfter() != 40*time.Second {
		t.Fatalf("RetryAfter() = %v in OPEN, want 40s", h.b.RetryAfter())
	}
	h.clk.Advance(40 * time.Second)
	check("half-open, slot free")
	tk, _ := h.b.Allow()
	h.clk.Advance(3 * time.Second)
	check("half-open, slots full")
	if h.b.RetryAfter() != 7*time.Second {
		t.Fatalf("RetryAfter() = %v with the slot taken, want 7s", h.b.RetryAfter())
	}
	tk.Done(nil)
	h.b.ForceOpen()
	check("forced open")
}
