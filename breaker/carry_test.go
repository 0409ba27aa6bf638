package breaker_test

import (
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

// renewFixture is a registry whose Configure reads settings that a test
// changes between Renews, as a config reload does.
type renewFixture struct {
	clock *breakertest.Clock
	reg   *breaker.Registry
	mu    sync.Mutex
	cfg   breaker.Config
	log   []breaker.Transition
}

func newRenewFixture(t *testing.T, cfg breaker.Config) *renewFixture {
	f := &renewFixture{clock: breakertest.NewClock(), cfg: cfg}
	var err error
	f.reg, err = breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{Clock: f.clock, Logger: discard, CountSuccesses: true, OnTransition: func(t breaker.Transition) {
			f.mu.Lock()
			f.log = append(f.log, t)
			f.mu.Unlock()
		}},
		Configure: func(key string, c breaker.Config) breaker.Config {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.cfg.Merge(c)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *renewFixture) renew(t *testing.T, cfg breaker.Config) *breaker.Breaker {
	t.Helper()
	f.mu.Lock()
	f.cfg = cfg
	f.mu.Unlock()
	b, err := f.reg.Renew("svc")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.reg.MustGet("svc"); got != b {
		t.Fatal("Get does not return the renewed breaker")
	}
	return b
}

func (f *renewFixture) transitions() []breaker.Transition {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]breaker.Transition(nil), f.log...)
}

func fail(b *breaker.Breaker, n int) {
	for range n {
		if t, err := b.Allow(); err == nil {
			t.Report(breaker.Failure)
		}
	}
}

func TestRenewKeepsOpenUntilTheOldDeadline(t *testing.T) {
	f := newRenewFixture(t, breaker.Config{FailureThreshold: 2, OpenTimeout: time.Minute})
	fail(f.reg.MustGet("svc"), 2)
	f.clock.Advance(10 * time.Second)
	b := f.renew(t, breaker.Config{FailureThreshold: 3, OpenTimeout: 5 * time.Second})
	if s := b.Snapshot(); s.State != breaker.Open || s.RetryAfter != 50*time.Second || s.Failures != 2 ||
		s.TransitionCount(breaker.Closed, breaker.Open) != 1 || s.LastTransition.Reason != breaker.ReasonFailureThreshold {
		t.Fatalf("after renew: %+v", s)
	}
	if _, err := b.Allow(); err == nil {
		t.Fatal("renewed OPEN breaker admitted a call")
	}
	f.clock.Advance(50*time.Second - time.Millisecond)
	if b.State() != breaker.Open {
		t.Fatalf("left OPEN before the old deadline: %v", b.State())
	}
	f.clock.Advance(time.Millisecond)
	tr := f.transitions()
	if b.State() != breaker.HalfOpen || len(tr) != 2 || tr[1].Reason != breaker.ReasonOpenTimeout || tr[1].From != breaker.Open {
		t.Fatalf("state %v transitions %+v: want exactly one open→half_open (the old breaker's timer stopped)", b.State(), tr)
	}
	// The new settings apply from the next opening.
	fail(b, 1)
	if s := b.Snapshot(); s.State != breaker.Open || s.RetryAfter != 5*time.Second {
		t.Fatalf("reopened: %v retry %v, want the new 5s open timeout", s.State, s.RetryAfter)
	}
}

func TestRenewKeepsForcedStates(t *testing.T) {
	for _, force := range []func(*breaker.Breaker){(*breaker.Breaker).ForceOpen, (*breaker.Breaker).ForceClosed} {
		f := newRenewFixture(t, breaker.Config{FailureThreshold: 2})
		force(f.reg.MustGet("svc"))
		want := f.reg.MustGet("svc").State()
		b := f.renew(t, breaker.Config{FailureThreshold: 4, OpenTimeout: time.Second})
		f.clock.Advance(time.Hour)
		if b.State() != want || len(f.transitions()) != 1 {
			t.Fatalf("state %v, want %v; transitions %+v", b.State(), want, f.transitions())
		}
		_, err := b.Allow()
		if (err != nil) != (want == breaker.ForcedOpen) {
			t.Fatalf("%v: Allow err %v", want, err)
		}
	}
}

func TestRenewCarriesTheStreakBelowTheNewThreshold(t *testing.T) {
	f := newRenewFixture(t, breaker.Config{FailureThreshold: 5})
	fail(f.reg.MustGet("svc"), 3)
	b := f.renew(t, breaker.Config{FailureThreshold: 10})
	if s := b.Snapshot(); s.State != breaker.Closed || s.ConsecutiveFailures != 3 || s.Failures != 3 {
		t.Fatalf("raised threshold: %+v", s)
	}
	fail(b, 6)
	if b.State() != breaker.Closed {
		t.Fatal("opened before the new threshold")
	}
	// A lower threshold keeps the circuit CLOSED, one failure from opening.
	b = f.renew(t, breaker.Config{FailureThreshold: 4})
	if s := b.Snapshot(); s.State != breaker.Closed || s.ConsecutiveFailures != 3 || len(f.transitions()) != 0 {
		t.Fatalf("lowered threshold: %+v", s)
	}
	fail(b, 1)
	if tr := f.transitions(); b.State() != breaker.Open || len(tr) != 1 || tr[0].Failures != 4 {
		t.Fatalf("state %v transitions %+v", b.State(), tr)
	}
}

func TestRenewKeepsHalfOpenAndItsProbes(t *testing.T) {
	f := newRenewFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenSuccesses: 3})
	fail(f.reg.MustGet("svc"), 1)
	f.clock.Advance(time.Second)
	old := f.reg.MustGet("svc")
	p, err := old.Allow()
	if err != nil {
		t.Fatal(err)
	}
	p.Report(breaker.Success)
	inFlight, err := old.Allow() // a probe still running during the reload
	if err != nil {
		t.Fatal(err)
	}
	b := f.renew(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Second, HalfOpenSuccesses: 2})
	if s := b.Snapshot(); s.State != breaker.HalfOpen || s.ConsecutiveSuccesses != 1 || s.ProbesInFlight != 0 {
		t.Fatalf("after renew: %+v", s)
	}
	inFlight.Report(breaker.Failure) // lands on the retired breaker: stale, no transition
	if n := len(f.transitions()); n != 2 || old.Snapshot().StaleOutcomes != 1 {
		t.Fatalf("%d transitions, old stale %d: the retired breaker moved", n, old.Snapshot().StaleOutcomes)
	}
	q, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	q.Report(breaker.Success)
	if tr := f.transitions(); b.State() != breaker.Closed || tr[len(tr)-1].Reason != breaker.ReasonProbesSucceeded {
		t.Fatalf("state %v, transitions %+v: want closed after 2 successes in all", b.State(), tr)
	}
}

func TestRenewWithoutAnOldBreakerIsGet(t *testing.T) {
	f := newRenewFixture(t, breaker.Config{FailureThreshold: 2})
	b := f.renew(t, breaker.Config{FailureThreshold: 7})
	if b.State() != breaker.Closed || b.Config().FailureThreshold != 7 {
		t.Fatalf("%v %+v", b.State(), b.Config())
	}
	f.mu.Lock()
	f.cfg = breaker.Config{OpenTimeout: -1}
	f.mu.Unlock()
	if _, err := f.reg.Renew("svc"); err == nil || f.reg.MustGet("svc") != b {
		t.Fatalf("invalid config: err %v; the old breaker must stay", err)
	}
}
