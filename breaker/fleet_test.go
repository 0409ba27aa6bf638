package breaker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// recordingSync is a Sync that records what the breaker tells it and grants
// or denies probes as told. (The real one, on Redis, is tested in redisstate.)
type recordingSync struct {
	mu          sync.Mutex
	link        *breaker.FleetLink
	reports     []breaker.Report
	transitions []breaker.Transition
	acquired    []uint64
	deny        bool
	retry       time.Duration
}

var _ interface {
	breaker.Sync
	breaker.OutcomeSync
	breaker.ProbeSync
	breaker.TransitionSync
} = (*recordingSync)(nil)

func (s *recordingSync) Attach(l *breaker.FleetLink) { s.link = l }
func (s *recordingSync) Report(_ *breaker.FleetLink, r breaker.Report) {
	s.mu.Lock()
	s.reports = append(s.reports, r)
	s.mu.Unlock()
}
func (s *recordingSync) AcquireProbe(_ context.Context, _ *breaker.FleetLink, id uint64) (bool, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acquired = append(s.acquired, id)
	return !s.deny, s.retry
}
func (s *recordingSync) Transition(_ *breaker.FleetLink, t breaker.Transition) {
	s.mu.Lock()
	s.transitions = append(s.transitions, t)
	s.mu.Unlock()
}

func (s *recordingSync) takeReports() []breaker.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reports
	s.reports = nil
	return r
}

func TestSyncHearsFailuresAndTheSuccessThatEndsAStreakOnly(t *testing.T) {
	s := &recordingSync{}
	h := newHarness(t, breaker.Config{FailureThreshold: 3, Sync: s})
	if s.link == nil || s.link.Breaker() != h.b {
		t.Fatal("Attach was not called with the new breaker's link")
	}
	h.succeed(5) // healthy: the fleet hears nothing
	if r := s.takeReports(); len(r) != 0 {
		t.Fatalf("healthy successes reported: %+v", r)
	}
	h.fail(2)
	h.succeed(3) // the first success ends the streak; the rest are healthy again
	got := s.takeReports()
	want := []breaker.Outcome{breaker.Failure, breaker.Failure, breaker.Success}
	if len(got) != len(want) {
		t.Fatalf("reports = %+v, want outcomes %v", got, want)
	}
	for i, r := range got {
		if r.Outcome != want[i] || r.Probe != 0 {
			t.Fatalf("report %d = %+v, want outcome %v in CLOSED", i, r, want[i])
		}
	}
	h.fail(3) // opens: the last report says for how long
	got = s.takeReports()
	if last := got[len(got)-1]; last.OpenFor != time.Minute {
		t.Fatalf("tripping report OpenFor = %v, want 1m", last.OpenFor)
	}
}

func TestFleetStreakMakesTheNextSuccessReported(t *testing.T) {
	s := &recordingSync{}
	h := newHarness(t, breaker.Config{Sync: s})
	s.link.Apply(breaker.FleetState{State: breaker.Closed, Streak: true})
	h.succeed(2)
	got := s.takeReports()
	if len(got) != 1 || got[0].Outcome != breaker.Success {
		t.Fatalf("reports = %+v, want exactly one success (the one that ends the fleet's streak)", got)
	}
	if len(h.events) != 0 {
		t.Fatalf("a streak is not a transition, got %+v", h.events)
	}
}

func TestFleetDeniedProbeIsRejectedAndReleasesTheLocalSlot(t *testing.T) {
	s := &recordingSync{deny: true, retry: 3 * time.Second}
	h := newHarness(t, breaker.Config{FailureThreshold: 1, Sync: s})
	h.fail(1)
	h.clk.Advance(time.Minute)
	h.wantState(breaker.HalfOpen)
	calls := h.calls
	err := h.do(nil)
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("denied probe: got %v, want ErrOpen", err)
	}
	if d, _ := breaker.RetryAfter(err); d != 3*time.Second {
		t.Fatalf("RetryAfter = %v, want the fleet's 3s", d)
	}
	if h.calls != calls {
		t.Fatal("the function ran although the fleet denied the probe")
	}
	if snap := h.b.Snapshot(); snap.ProbesInFlight != 0 || snap.RejectedHalfOpen != 1 {
		t.Fatalf("after denial: %d probes in flight, %d half-open rejections; want 0 and 1", snap.ProbesInFlight, snap.RejectedHalfOpen)
	}

	s.mu.Lock()
	s.deny = false
	s.mu.Unlock()
	s.takeReports()
	h.fail(1) // granted probe fails: reopens, reported with its slot id and open time
	h.wantState(breaker.Open)
	got := s.takeReports()
	if len(got) != 1 || got[0].Probe == 0 || got[0].Outcome != breaker.Failure || got[0].OpenFor != time.Minute {
		t.Fatalf("probe report = %+v, want one failed probe with its slot id and OpenFor 1m", got)
	}
	if s.acquired[1] != got[0].Probe {
		t.Fatalf("reported probe id %d, acquired %d", got[0].Probe, s.acquired[1])
	}
}

func TestExpiredProbeIsReportedAsFailedProbe(t *testing.T) {
	s := &recordingSync{}
	h := newHarness(t, breaker.Config{FailureThreshold: 1, ProbeTimeout: time.Second, Sync: s})
	h.fail(1)
	h.clk.Advance(time.Minute)
	if _, err := h.b.Allow(); err != nil {
		t.Fatal(err)
	}
	s.takeReports()
	h.clk.Advance(time.Second)
	h.wantState(breaker.Open)
	got := s.takeReports()
	if len(got) != 1 || got[0].Probe == 0 || got[0].Outcome != breaker.Failure {
		t.Fatalf("reports = %+v, want one failed probe", got)
	}
}

func TestFleetApplyIsATransitionWithFleetReasonAndTheFleetsTime(t *testing.T) {
	s := &recordingSync{}
	h := newHarness(t, breaker.Config{Name: "genesys/eu-west-1", Sync: s})
	if changed, err := s.link.Apply(breaker.FleetState{State: breaker.Open, OpenFor: 42 * time.Second}); !changed || err != nil {
		t.Fatalf("Apply(Open) on a CLOSED breaker = %v, %v; want a change", changed, err)
	}
	h.wantState(breaker.Open)
	if ev := h.events[0]; ev.Reason != breaker.ReasonFleet || ev.OpenFor != 42*time.Second {
		t.Fatalf("event = %+v, want reason fleet and OpenFor 42s", ev)
	}
	if d := h.b.Snapshot().RetryAfter; d != 42*time.Second {
		t.Fatalf("RetryAfter = %v, want the fleet's 42s", d)
	}
	// Same state, new remaining time: no event, the deadline moves.
	if changed, err := s.link.Apply(breaker.FleetState{State: breaker.Open, OpenFor: 10 * time.Second}); changed || err != nil {
		t.Fatalf("Apply(Open) on an OPEN breaker = %v, %v; want no change", changed, err)
	}
	h.clk.Advance(10 * time.Second)
	h.wantState(breaker.HalfOpen)
	s.link.Apply(breaker.FleetState{State: breaker.Closed})
	h.wantState(breaker.Closed)
	if len(h.events) != 3 {
		t.Fatalf("events = %d, want 3 (open, half_open, closed)", len(h.events))
	}
	// Only the local timer's transition is the breaker's own.
	if len(s.transitions) != 1 || s.transitions[0].Reason != breaker.ReasonOpenTimeout {
		t.Fatalf("Sync.Transition saw %+v, want only the open_timeout transition", s.transitions)
	}
	if msg := h.events[0].Message(); msg != "Circuit breaker OPEN for genesys/eu-west-1: opened by the fleet, next probe in 42s" {
		t.Fatalf("message = %q", msg)
	}
}

func TestAFleetTransitionSaysWhyTheFleetMoved(t *testing.T) {
	s := &recordingSync{}
	h := newHarness(t, breaker.Config{Name: "genesys/eu-west-1", Sync: s})
	s.link.Apply(breaker.FleetState{State: breaker.Open, OpenFor: time.Minute, Reason: breaker.ReasonFailureThreshold})
	ev := h.events[0]
	if ev.FleetReason != breaker.ReasonFailureThreshold || h.b.Snapshot().LastTransition.FleetReason != breaker.ReasonFailureThreshold {
		t.Fatalf("event %+v: want FleetReason failure_threshold on the event and the snapshot", ev)
	}
	want := "Circuit breaker OPEN for genesys/eu-west-1: opened by the fleet (failure_threshold), next probe in 1m0s"
	if ev.Message() != want {
		t.Fatalf("message %q, want %q", ev.Message(), want)
	}
	if !strings.Contains(h.log.String(), `"fleet_reason":"failure_threshold"`) || !strings.Contains(h.log.String(), `"breaker":"genesys/eu-west-1"`) {
		t.Fatalf("log lacks the breaker or the fleet's reason:\n%s", h.log)
	}
	for r := breaker.ReasonFailureThreshold; r <= breaker.ReasonFleet; r++ {
		if got, err := breaker.ParseReason(r.String()); err != nil || got != r {
			t.Fatalf("ParseReason(%q) = %v, %v", r.String(), got, err)
		}
	}
	if _, err := breaker.ParseReason("streak"); err == nil || !strings.Contains(err.Error(), "probe_failed") {
		t.Fatalf(`ParseReason("streak") = %v, want an error listing the reasons`, err)
	}
}

// What the fleet hands in is validated: an unknown state used to panic
// under the breaker's lock, and every later Snapshot blocked for good.
func TestFleetLinkRejectsInvalidStateWithoutPanicOrLock(t *testing.T) {
	s := &recordingSync{}
	h := newHarness(t, breaker.Config{Sync: s})
	bad := []struct {
		fs    breaker.FleetState
		field string
	}{
		{breaker.FleetState{State: 9}, "FleetState.State"},
		{breaker.FleetState{State: breaker.Open, OpenFor: -time.Second}, "FleetState.OpenFor"},
		{breaker.FleetState{State: breaker.Open, Reason: 200}, "FleetState.Reason"},
	}
	for _, tt := range bad {
		changed, err := s.link.Apply(tt.fs)
		if changed || err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Fatalf("Apply(%+v) = %v, %v; want an error naming %s", tt.fs, changed, err, tt.field)
		}
	}
	done := make(chan breaker.Snapshot)
	go func() { done <- h.b.Snapshot() }()
	select {
	case s := <-done:
		if s.State != breaker.Closed || s.Generation != 0 {
			t.Fatalf("after invalid fleet states: %v gen %d, want closed gen 0", s.State, s.Generation)
		}
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatal("Snapshot blocked after an invalid Apply: the lock was left held")
	}
	h.fail(5)
	h.wantState(breaker.Open)
}

// attachOnly is the least a Sync implements: Attach. The optional hooks are
// found by type assertion, so a fleet that only pushes states (say, a
// control plane forcing circuits open) needs nothing more.
type attachOnly struct{ link *breaker.FleetLink }

func (s *attachOnly) Attach(l *breaker.FleetLink) { s.link = l }

func TestSyncWithAttachOnlyRunsTheBreakerLocallyAndCanMoveIt(t *testing.T) {
	s := &attachOnly{}
	h := newHarness(t, breaker.Config{FailureThreshold: 2, Sync: s})
	h.halfOpen() // trips and half-opens with no hook to report to
	h.succeed(2)
	h.wantState(breaker.Closed)
	if _, err := s.link.Apply(breaker.FleetState{State: breaker.ForcedOpen}); err != nil {
		t.Fatal(err)
	}
	h.wantRejected(h.do(nil))
	if tr := h.lastTransition(); tr.Reason != breaker.ReasonFleet || tr.To != breaker.ForcedOpen {
		t.Fatalf("last transition = %+v, want forced_open by the fleet", tr)
	}
}

// blockingLease is a ProbeSync whose lease never comes: AcquireProbe waits
// until the caller's ctx is done, as a fleet behind a slow network would.
type blockingLease struct {
	attachOnly
	entered chan struct{}
}

func (s *blockingLease) AcquireProbe(ctx context.Context, _ *breaker.FleetLink, _ uint64) (bool, time.Duration) {
	s.entered <- struct{}{}
	<-ctx.Done()
	return false, 0
}

func TestCancelledContextEndsTheWaitForAProbeLease(t *testing.T) {
	s := &blockingLease{entered: make(chan struct{}, 1)}
	h := newHarness(t, breaker.Config{FailureThreshold: 1, Sync: s})
	h.halfOpen()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.b.AllowContext(ctx)
		done <- err
	}()
	<-s.entered // waiting on the fleet
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("AllowContext after cancel = %v, want context.Canceled (not a rejection)", err)
		}
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatal("AllowContext still waiting for the lease after its ctx was cancelled")
	}
	if snap := h.b.Snapshot(); snap.ProbesInFlight != 0 || snap.RejectedHalfOpen != 0 || snap.State != breaker.HalfOpen {
		t.Fatalf("after a cancelled wait: %v, %d probes in flight, %d half-open rejections; want half_open, 0, 0",
			snap.State, snap.ProbesInFlight, snap.RejectedHalfOpen)
	}

	// Do passes its ctx: one already done does not ask the fleet, nor run fn.
	calls := h.calls
	err := h.b.Do(ctx, func(context.Context) error { h.calls++; return nil })
	if !errors.Is(err, context.Canceled) || h.calls != calls {
		t.Fatalf("Do with a cancelled ctx in HALF_OPEN = %v, ran %d times; want context.Canceled, not run", err, h.calls-calls)
	}
	select {
	case <-s.entered:
		t.Fatal("the fleet was asked for a lease for a ctx already done")
	default:
	}
}
