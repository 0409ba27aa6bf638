package queuegate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/queuegate"
)

var (
	errDown = errors.New("503 Service Unavailable")
	quiet   = slog.New(slog.NewTextHandler(io.Discard, nil))
)

// fixture is a breaker on a manual clock and a gate on it.
type fixture struct {
	t      *testing.T
	clk    *breakertest.Clock
	b      *breaker.Breaker
	g      *queuegate.Gate
	mu     sync.Mutex
	events []string
}

func newFixture(t *testing.T, bc breaker.Config, gc queuegate.Config) *fixture {
	t.Helper()
	f := &fixture{t: t, clk: breakertest.NewClock()}
	bc.Clock, bc.Logger = f.clk, quiet
	if bc.Name == "" {
		bc.Name = "genesys/eu-west-1"
	}
	b, err := breaker.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	f.b = b
	gc.Breaker, gc.Logger = b, quiet
	if gc.Rand == nil {
		gc.Rand = func() float64 { return 0.5 }
	}
	gc.OnEvent = func(e queuegate.Event) {
		f.mu.Lock()
		f.events = append(f.events, e.Kind())
		f.mu.Unlock()
	}
	if f.g, err = queuegate.New(gc); err != nil {
		t.Fatal(err)
	}
	return f
}

// trip fails calls through the breaker until it opens.
func (f *fixture) trip() {
	f.t.Helper()
	for i := 0; f.b.State() == breaker.Closed; i++ {
		if i > 100 {
			f.t.Fatal("breaker did not open after 100 failures")
		}
		f.b.Do(context.Background(), func(context.Context) error { return errDown })
	}
	if s := f.b.State(); s != breaker.Open {
		f.t.Fatalf("breaker is %v, want open", s)
	}
	f.g.Mode() // a consumer at work sees it at once
}

func (f *fixture) halfOpen() {
	f.t.Helper()
	f.trip()
	f.clk.Advance(f.b.Config().OpenTimeout)
	if s := f.b.State(); s != breaker.HalfOpen {
		f.t.Fatalf("breaker is %v, want half_open", s)
	}
}

func (f *fixture) wantMode(m queuegate.Mode) {
	f.t.Helper()
	if got := f.g.Mode(); got != m {
		f.t.Fatalf("gate mode = %v, want %v", got, m)
	}
}

func (f *fixture) wantEvents(want ...string) {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Join(f.events, ",") != strings.Join(want, ",") {
		f.t.Fatalf("events = %v, want %v", f.events, want)
	}
}

// call is a handler that calls the service through the breaker, as
// httpbreaker does.
func (f *fixture) call(result error) func(context.Context) error {
	return func(ctx context.Context) error {
		return f.b.Do(ctx, func(context.Context) error { return result })
	}
}

func TestFlowingAdmitsEveryMessage(t *testing.T) {
	f := newFixture(t, breaker.Config{}, queuegate.Config{})
	var permits []*queuegate.Permit
	for range 100 {
		p, ok := f.g.TryAcquire()
		if !ok {
			t.Fatal("closed circuit refused a message")
		}
		permits = append(permits, p)
	}
	for _, p := range permits {
		if v := p.Run(context.Background(), f.call(nil)); v.Action != queuegate.Ack {
			t.Fatalf("verdict %v, want ack", v.Action)
		}
	}
	s := f.g.Stats()
	if s.Acked != 100 || s.InFlight != 0 || s.Mode != queuegate.Flowing {
		t.Fatalf("stats %+v, want 100 acked, none in flight, flowing", s)
	}
	f.wantEvents()
}

func TestOpenCircuitPausesTheGate(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 3}, queuegate.Config{})
	f.trip()
	if _, ok := f.g.TryAcquire(); ok {
		t.Fatal("open circuit admitted a message")
	}
	f.wantMode(queuegate.Paused)
	f.wantEvents("paused")
	if s := f.g.Stats(); s.Pauses != 1 || s.Admitted != 0 {
		t.Fatalf("stats %+v, want 1 pause, nothing admitted", s)
	}
}

func TestAcquireWaitsWithoutPollingUntilHalfOpen(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute}, queuegate.Config{})
	f.trip()
	got := make(chan *queuegate.Permit)
	go func() {
		p, err := f.g.Acquire(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- p
	}()
	f.clk.Advance(59 * time.Second)
	select {
	case <-got:
		t.Fatal("Acquire returned while the circuit was open")
	default:
	}
	f.clk.Advance(time.Second) // the open timer fires: HALF_OPEN wakes Acquire
	p := <-got
	if !p.Probe() {
		t.Fatal("permit in HALF_OPEN is not a probe")
	}
	p.Release()
	f.wantEvents("paused", "probing")
}

func TestAcquireReturnsWhenContextIsDone(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1}, queuegate.Config{})
	f.trip()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := f.g.Acquire(ctx)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire returned %v, want context.Canceled", err)
	}
}

func TestDeferDelayIsRetryAfterPlusJitter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rand      float64
		jitter    time.Duration
		elapsed   time.Duration
		wantDelay time.Duration
	}{
		{"NoJitterDrawn", 0, 10 * time.Second, 20 * time.Second, 40 * time.Second},
		{"HalfJitter", 0.5, 10 * time.Second, 20 * time.Second, 45 * time.Second},
		{"AlmostFullJitter", 0.999, 10 * time.Second, 0, 60*time.Second + 9990*time.Millisecond},
		{"DefaultJitterIsATenthOfOpenTimeout", 0.5, 0, 30 * time.Second, 33 * time.Second},
		{"MinDelayWhenProbeIsDue", 0, 10 * time.Second, 60*time.Second - time.Millisecond, 6 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute},
				queuegate.Config{Jitter: tc.jitter, Rand: func() float64 { return tc.rand }})
			f.trip()
			f.clk.Advance(tc.elapsed)
			v := f.g.Defer()
			if v.Action != queuegate.Defer || v.Delay != tc.wantDelay {
				t.Fatalf("verdict %v after %v, want defer after %v", v, v.Delay, tc.wantDelay)
			}
		})
	}
}

func TestDeferDelayStaysWithinBounds(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute},
		queuegate.Config{Jitter: 5 * time.Second, Rand: rand.Float64})
	f.trip()
	f.clk.Advance(15 * time.Second)
	for range 1000 {
		v := f.g.Defer()
		if v.Delay < 45*time.Second || v.Delay >= 50*time.Second {
			t.Fatalf("delay %v, want in [45s, 50s): RetryAfter 45s plus up to 5s of jitter", v.Delay)
		}
	}
}

func TestRejectedCallIsDeferredAndCountsAsNothing(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute}, queuegate.Config{Jitter: time.Second})
	p, _ := f.g.TryAcquire()
	// The message was admitted while CLOSED; the circuit opens before its
	// call, which the breaker rejects without making.
	f.trip()
	failures := f.b.Snapshot().Failures
	v := p.Run(context.Background(), func(ctx context.Context) error {
		t.Fatal("handler ran for a message admitted before the circuit opened")
		return nil
	})
	if v.Action != queuegate.Defer || v.Delay < time.Minute || v.Delay > time.Minute+time.Second {
		t.Fatalf("verdict %v after %v, want defer after 60s + up to 1s of jitter", v.Action, v.Delay)
	}
	// A handler whose own breaker call is rejected: here by a second
	// circuit the handler goes through, which is open.
	other, _ := breaker.New(breaker.Config{Name: "other", FailureThreshold: 1, OpenTimeout: 30 * time.Second, Clock: f.clk, Logger: quiet})
	other.Do(context.Background(), func(context.Context) error { return errDown })
	f.b.Reset()
	p, _ = f.g.TryAcquire()
	v = p.Run(context.Background(), func(ctx context.Context) error {
		return other.Do(ctx, func(context.Context) error { return nil })
	})
	if v.Action != queuegate.Defer || !errors.Is(v.Err, breaker.ErrOpen) || v.Delay < 30*time.Second || v.Delay > 31*time.Second {
		t.Fatalf("verdict %v after %v (%v), want defer after the rejection's 30s + jitter", v.Action, v.Delay, v.Err)
	}
	if got := f.b.Snapshot().Failures; got != failures {
		t.Fatalf("breaker failures %d after deferrals, want %d: not attempted is no failure", got, failures)
	}
	if s := f.g.Stats(); s.Deferred != 2 || s.Retried != 0 || s.DeadLettered != 0 {
		t.Fatalf("stats %+v, want 2 deferred and nothing else", s)
	}
}

func TestHalfOpenAdmitsExactlyTheProbeSlots(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, HalfOpenProbes: 2, HalfOpenSuccesses: 5}, queuegate.Config{})
	f.halfOpen()
	p1, ok1 := f.g.TryAcquire()
	p2, ok2 := f.g.TryAcquire()
	if !ok1 || !ok2 {
		t.Fatal("HALF_OPEN with 2 probe slots refused one of the first 2 messages")
	}
	if _, ok := f.g.TryAcquire(); ok {
		t.Fatal("HALF_OPEN with 2 probe slots admitted a third message")
	}
	// A waiter wakes when a probe finishes, though the breaker does not move.
	got := make(chan *queuegate.Permit)
	go func() {
		p, _ := f.g.Acquire(context.Background())
		got <- p
	}()
	if v := p1.Run(context.Background(), f.call(nil)); v.Action != queuegate.Ack {
		t.Fatalf("probe verdict %v, want ack", v.Action)
	}
	p3 := <-got
	if _, ok := f.g.TryAcquire(); ok {
		t.Fatal("admitted a third probe while two were out")
	}
	p2.Release()
	p3.Release()
	if s := f.g.Stats(); s.Probes != 3 || s.InFlight != 0 {
		t.Fatalf("stats %+v, want 3 probes, none in flight", s)
	}
}

func TestPermitFromClosedBecomesProbeOrDefers(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 5}, queuegate.Config{})
	a, _ := f.g.TryAcquire()
	b, _ := f.g.TryAcquire()
	f.halfOpen()
	ran := 0
	run := func(context.Context) error { ran++; return nil }
	if v := a.Run(context.Background(), run); v.Action != queuegate.Ack || !a.Probe() {
		t.Fatalf("first stale permit: verdict %v, probe %v; want ack as the probe", v.Action, a.Probe())
	}
	p, _ := f.g.TryAcquire() // takes the only slot
	if v := b.Run(context.Background(), run); v.Action != queuegate.Defer {
		t.Fatalf("second stale permit with the slot taken: verdict %v, want defer", v.Action)
	}
	p.Release()
	if ran != 1 {
		t.Fatalf("handler ran %d times, want 1", ran)
	}
}

func TestClosingResumesFullSpeed(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute, HalfOpenSuccesses: 3}, queuegate.Config{})
	var paused time.Duration
	f.g = mustGate(t, queuegate.Config{Breaker: f.b, Logger: quiet, OnEvent: func(e queuegate.Event) {
		f.events = append(f.events, e.Kind())
		if e.To == queuegate.Flowing {
			paused = e.PausedFor
		}
	}})
	f.halfOpen()
	for i := range 3 {
		p, err := f.g.Acquire(context.Background())
		if err != nil || !p.Probe() {
			t.Fatalf("probe %d: permit %v, err %v", i, p, err)
		}
		f.clk.Advance(time.Second)
		p.Run(context.Background(), f.call(nil))
	}
	f.wantMode(queuegate.Flowing)
	for range 50 {
		if _, ok := f.g.TryAcquire(); !ok {
			t.Fatal("closed circuit refused a message after resuming")
		}
	}
	f.wantEvents("paused", "probing", "resumed")
	if paused != time.Minute+3*time.Second {
		t.Fatalf("resumed after %v paused, want 63s", paused)
	}
	if s := f.g.Stats(); s.Pauses != 1 || s.Resumes != 1 || s.PausedTime != paused {
		t.Fatalf("stats %+v, want 1 pause, 1 resume, %v paused", s, paused)
	}
}

func TestFailedProbePausesAgain(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute},
		queuegate.Config{Jitter: time.Second, Rand: func() float64 { return 0 }})
	f.halfOpen()
	p, _ := f.g.TryAcquire()
	v := p.Run(context.Background(), f.call(errDown))
	// The probe was attempted and failed: the breaker counted it, but the
	// failure is the outage's, not the message's. Deferred, not charged,
	// back once a probe may run again.
	if v.Action != queuegate.Defer || !v.Outage || v.Delay != time.Minute || !errors.Is(v.Err, errDown) {
		t.Fatalf("failed probe: verdict %+v, want an outage defer after the 60s open timeout", v)
	}
	if _, ok := f.g.TryAcquire(); ok {
		t.Fatal("reopened circuit admitted a message")
	}
	f.wantEvents("paused", "probing", "paused")
	if s := f.g.Stats(); s.Pauses != 2 || s.Retried != 0 || s.Deferred != 1 || s.OutageFailures != 1 {
		t.Fatalf("stats %+v, want 2 pauses, 0 retried, 1 deferred as an outage failure", s)
	}
}

// A long outage: the same message is the probe again and again, and fails
// each time. It is never charged a retry, so no retry budget, however small,
// runs out.
func TestProbesFailingThroughALongOutageAreNeverCharged(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: 100 * time.Millisecond}, queuegate.Config{})
	f.trip()
	for i := range 50 { // 50 × the open timeout, 10 × a budget of 5
		f.clk.Advance(100 * time.Millisecond)
		p, ok := f.g.TryAcquire()
		if !ok || !p.Probe() {
			t.Fatalf("round %d: no probe admitted at HALF_OPEN", i)
		}
		if v := p.Run(context.Background(), f.call(errDown)); v.Action != queuegate.Defer || !v.Outage {
			t.Fatalf("round %d: failed probe judged %+v, want an outage defer", i, v)
		}
	}
	if s := f.g.Stats(); s.Retried != 0 || s.OutageFailures != 50 || s.DeadLettered != 0 {
		t.Fatalf("stats %+v, want 50 outage failures, nothing retried or dead-lettered", s)
	}
}

// The failure that opens the circuit, and those in flight as it opens, are
// the outage's; the failures before it, with the circuit still closed, may
// be the message's and are charged.
func TestFailureThatOpensTheCircuitIsTheOutages(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 3, OpenTimeout: time.Minute}, queuegate.Config{})
	var permits []*queuegate.Permit
	for range 3 {
		p, _ := f.g.TryAcquire()
		permits = append(permits, p)
	}
	var got []string
	for _, p := range permits {
		v := p.Run(context.Background(), f.call(errDown))
		got = append(got, fmt.Sprintf("%v/%v", v.Action, v.Outage))
	}
	if want := "retry/false,retry/false,defer/true"; strings.Join(got, ",") != want {
		t.Fatalf("verdicts %v, want %s", got, want)
	}
	if s := f.g.Stats(); s.Retried != 2 || s.OutageFailures != 1 {
		t.Fatalf("stats %+v, want 2 retried, 1 outage failure", s)
	}
}

// Under concurrent observers of a flapping breaker, the gate's recorded
// mode ends up the breaker's: an observation read before a transition never
// overwrites one read after it, and the events alternate consistently.
func TestStaleObservationNeverOverwritesAFresherOne(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute}, queuegate.Config{})
	var events []queuegate.Event
	var mu sync.Mutex
	g := mustGate(t, queuegate.Config{Breaker: f.b, Logger: quiet, OnEvent: func(e queuegate.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Observe until the breaker has stopped flapping, then once
			// more: observations read before the last Reset may still be
			// on their way in other goroutines, and must not win. (A fixed
			// count of iterations let a slow main loop outlast every
			// observer on a loaded machine, leaving nobody to observe the
			// last Reset.)
			for {
				select {
				case <-stop:
					g.Mode()
					return
				default:
				}
				if p, ok := g.TryAcquire(); ok {
					p.Release()
				}
				g.Mode()
			}
		}()
	}
	for range 2000 {
		f.b.ForceOpen()
		f.b.Reset()
	}
	close(stop)
	wg.Wait()
	if s := g.Stats(); s.Mode != queuegate.Flowing { // without asking the breaker again
		t.Fatalf("gate recorded %v with its breaker closed: a stale observation won", s.Mode)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(events); i++ {
		if events[i].From != events[i-1].To || events[i].From == events[i].To {
			t.Fatalf("event %d goes %v→%v after %v→%v", i, events[i].From, events[i].To, events[i-1].From, events[i-1].To)
		}
	}
	if n := len(events); n > 0 && events[n-1].To != queuegate.Flowing {
		t.Fatalf("last event %v→%v with the breaker closed: spurious", events[n-1].From, events[n-1].To)
	}
}

func TestTransientFailureWhileClosedRetriesAfterRetryDelay(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 10},
		queuegate.Config{RetryDelay: 3 * time.Second, Jitter: time.Second, Rand: func() float64 { return 0.25 }})
	p, _ := f.g.TryAcquire()
	v := p.Run(context.Background(), f.call(errDown))
	if v.Action != queuegate.Retry || v.Delay != 3250*time.Millisecond || !errors.Is(v.Err, errDown) {
		t.Fatalf("verdict %v after %v (%v), want retry after 3.25s with the error", v.Action, v.Delay, v.Err)
	}
}

func TestMessageFailureGoesToDeadLetterUngated(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1}, queuegate.Config{})
	bad := errors.New("400 Bad Request: unknown conversation")
	p, _ := f.g.TryAcquire()
	// The service answered 400: a success for the breaker (httpbreaker
	// counts 4xx as success), a dead letter for the message.
	v := p.Run(context.Background(), func(ctx context.Context) error {
		if err := f.b.Do(ctx, func(context.Context) error { return nil }); err != nil {
			return err
		}
		return queuegate.MarkDeadLetter(bad)
	})
	if v.Action != queuegate.DeadLetter || !errors.Is(v.Err, bad) {
		t.Fatalf("verdict %v (%v), want dead_letter with the error", v.Action, v.Err)
	}
	if s := f.b.State(); s != breaker.Closed {
		t.Fatalf("breaker %v after a 4xx, want closed", s)
	}
	f.wantMode(queuegate.Flowing)
	if s := f.g.Stats(); s.DeadLettered != 1 || s.Pauses != 0 || s.Deferred != 0 {
		t.Fatalf("stats %+v, want 1 dead-lettered, no pause, no deferral", s)
	}
}

func TestCustomClassifierDecides(t *testing.T) {
	f := newFixture(t, breaker.Config{}, queuegate.Config{Classify: func(err error) queuegate.Action {
		if strings.Contains(err.Error(), "duplicate") {
			return queuegate.Ack
		}
		return queuegate.DeadLetter
	}})
	for _, tc := range []struct {
		err  error
		want queuegate.Action
	}{{errors.New("duplicate id"), queuegate.Ack}, {errors.New("schema"), queuegate.DeadLetter}} {
		p, _ := f.g.TryAcquire()
		if v := p.Run(context.Background(), func(context.Context) error { return tc.err }); v.Action != tc.want {
			t.Fatalf("%v: verdict %v, want %v", tc.err, v.Action, tc.want)
		}
	}
}

// A handler cut short by the end of its context (a consumer past its drain
// timeout) may or may not have reached the service: its message is not
// charged, and comes back after RetryDelay, never at once.
func TestHandlerCutShortIsDeferredNotRequeuedAtOnce(t *testing.T) {
	f := newFixture(t, breaker.Config{}, queuegate.Config{RetryDelay: 2 * time.Second, Jitter: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	p, _ := f.g.TryAcquire()
	v := p.Run(ctx, func(ctx context.Context) error { cancel(); return ctx.Err() })
	if v.Action != queuegate.Defer || v.Delay != 2500*time.Millisecond {
		t.Fatalf("verdict %v after %v, want defer after RetryDelay 2s + jitter 0.5s", v.Action, v.Delay)
	}
	if s := f.g.Stats(); s.CutShort != 1 || s.Retried != 0 {
		t.Fatalf("stats %+v, want 1 cut short, nothing retried", s)
	}
}

func TestRegistryKeyedGateFollowsTheKey(t *testing.T) {
	clk := breakertest.NewClock()
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default:  breaker.Config{Clock: clk, Logger: quiet},
		Profiles: map[string]breaker.Config{"genesys": {FailureThreshold: 10, OpenTimeout: time.Minute, HalfOpenSuccesses: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	east := mustGate(t, queuegate.Config{Registry: reg, Key: "genesys/us-east-1", Logger: quiet})
	west := mustGate(t, queuegate.Config{Registry: reg, Key: "genesys/eu-west-1", Logger: quiet})
	for range 10 {
		west.Breaker().Do(context.Background(), func(context.Context) error { return errDown })
	}
	if _, ok := west.TryAcquire(); ok {
		t.Fatal("gate of the region that is down admitted a message")
	}
	p, ok := east.TryAcquire()
	if !ok {
		t.Fatal("gate of a healthy region paused with another region's outage")
	}
	p.Release()
	if west.Name() != "genesys/eu-west-1" {
		t.Fatalf("gate name %q, want the key", west.Name())
	}
	// A waiter on the registry's breaker wakes at its transition.
	got := make(chan *queuegate.Permit)
	go func() {
		p, _ := west.Acquire(context.Background())
		got <- p
	}()
	clk.Advance(time.Minute)
	(<-got).Release()
}

func TestConfigErrorsNameTheField(t *testing.T) {
	b, _ := breaker.New(breaker.Config{})
	reg, _ := breaker.NewRegistry(breaker.RegistryConfig{})
	for _, tc := range []struct {
		name string
		cfg  queuegate.Config
		want string
	}{
		{"NoBreaker", queuegate.Config{}, "Config.Breaker and Config.Registry are both nil"},
		{"BothBreakerAndRegistry", queuegate.Config{Breaker: b, Registry: reg, Key: "k"}, "both set"},
		{"RegistryWithoutKey", queuegate.Config{Registry: reg}, "Config.Key is empty"},
		{"KeyWithBreaker", queuegate.Config{Breaker: b, Key: "k"}, "Config.Key is \"k\" with Config.Breaker set"},
		{"NegativeJitter", queuegate.Config{Breaker: b, Jitter: -time.Second}, "Config.Jitter is -1s: must be ≥ 0"},
		{"NegativeMinDelay", queuegate.Config{Breaker: b, MinDelay: -1}, "Config.MinDelay is -1ns"},
		{"NegativeRetryDelay", queuegate.Config{Breaker: b, RetryDelay: -time.Millisecond}, "Config.RetryDelay is -1ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := queuegate.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, HalfOpenProbes: 1}, queuegate.Config{})
	f.halfOpen()
	p, _ := f.g.TryAcquire()
	p.Release()
	p.Release()
	q, ok := f.g.TryAcquire()
	if !ok {
		t.Fatal("slot not freed by Release")
	}
	if _, ok := f.g.TryAcquire(); ok {
		t.Fatal("double Release freed two slots")
	}
	q.Release()
}

func TestDryRunBreakerNeverPausesTheGate(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, DryRun: true}, queuegate.Config{})
	f.b.Do(context.Background(), func(context.Context) error { return errDown })
	if f.b.State() != breaker.Open {
		t.Fatalf("breaker %v, want open (dry run)", f.b.State())
	}
	if _, ok := f.g.TryAcquire(); !ok {
		t.Fatal("gate paused on a dry-run breaker, which lets every call through")
	}
}

func TestConcurrentProbesNeverExceedSlots(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, HalfOpenProbes: 3, HalfOpenSuccesses: 1000}, queuegate.Config{})
	f.halfOpen()
	var mu sync.Mutex
	cur, peak := 0, 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				p, err := f.g.Acquire(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				p.Run(context.Background(), func(context.Context) error {
					mu.Lock()
					cur++
					peak = max(peak, cur)
					mu.Unlock()
					mu.Lock()
					cur--
					mu.Unlock()
					return nil
				})
			}
		}()
	}
	wg.Wait()
	if peak > 3 {
		t.Fatalf("%d messages ran at once in HALF_OPEN with 3 probe slots", peak)
	}
}

func mustGate(t *testing.T, cfg queuegate.Config) *queuegate.Gate {
	t.Helper()
	g, err := queuegate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestWatchReportsTransitionsOfAnIdleConsumer(t *testing.T) {
	f := newFixture(t, breaker.Config{FailureThreshold: 1, HalfOpenSuccesses: 1}, queuegate.Config{})
	ev := make(chan queuegate.Event, 10)
	g := mustGate(t, queuegate.Config{Breaker: f.b, Logger: quiet, OnEvent: func(e queuegate.Event) { ev <- e }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Watch(ctx); close(done) }()
	f.b.Do(ctx, func(context.Context) error { return errDown })
	if e := <-ev; e.To != queuegate.Paused || e.RetryAfter != time.Minute {
		t.Fatalf("event %+v, want paused with a minute to the probe", e)
	}
	f.clk.Advance(time.Minute)
	if e := <-ev; e.To != queuegate.Probing {
		t.Fatalf("event %+v, want probing", e)
	}
	f.b.Do(ctx, func(context.Context) error { return nil })
	if e := <-ev; e.To != queuegate.Flowing || e.PausedFor != time.Minute {
		t.Fatalf("event %+v, want resumed after a minute", e)
	}
	cancel()
	<-done
}
