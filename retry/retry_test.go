package retry_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/retry"
)

var errBoom = errors.New("boom")

// sleeper records the waits and moves a manual clock instead of sleeping.
type sleeper struct {
	mu    sync.Mutex
	clock *breakertest.Clock
	waits []time.Duration
}

func newSleeper() *sleeper { return &sleeper{clock: breakertest.NewClock()} }

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	s.clock.Advance(d)
	return ctx.Err()
}

func (s *sleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// policy returns p wired to s, so no test sleeps for real.
func (s *sleeper) policy(p retry.Policy) retry.Policy {
	p.Clock, p.Sleep = s.clock, s.Sleep
	return p
}

// rejection returns a real rejection by an open breaker.
func rejection(t *testing.T) error {
	t.Helper()
	b, err := breaker.New(breaker.Config{Name: "upstream", Clock: breakertest.NewClock()})
	if err != nil {
		t.Fatal(err)
	}
	b.ForceOpen()
	_, err = b.Allow()
	if !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Allow on a forced-open breaker = %v, want ErrOpen", err)
	}
	return err
}

func TestDo(t *testing.T) {
	open := rejection(t)
	tests := []struct {
		name      string
		policy    retry.Policy
		errs      []error // returned by successive attempts; nil afterwards
		wantCalls int
		wantErr   error
		wantWaits []time.Duration // nil: don't check the values, only the count (wantCalls-1)
	}{
		{name: "FirstTrySuccessMakesOneCall", errs: nil, wantCalls: 1},
		{name: "FailuresAreRetriedUntilSuccess", errs: []error{errBoom, errBoom}, wantCalls: 3},
		{name: "StopsAfterMaxAttempts", policy: retry.Policy{MaxAttempts: 4},
			errs: []error{errBoom, errBoom, errBoom, errBoom, errBoom}, wantCalls: 4, wantErr: errBoom},
		{name: "MaxAttemptsOneNeverRetries", policy: retry.Policy{MaxAttempts: 1},
			errs: []error{errBoom}, wantCalls: 1, wantErr: errBoom},
		{name: "BreakerRejectionIsNeverRetried", errs: []error{open}, wantCalls: 1, wantErr: breaker.ErrOpen},
		{name: "WrappedBreakerRejectionIsNeverRetried", errs: []error{errors.Join(errBoom, open)}, wantCalls: 1, wantErr: breaker.ErrOpen},
		{name: "PermanentErrorIsReturnedUnwrappedAtOnce", errs: []error{retry.Permanent(errBoom)}, wantCalls: 1, wantErr: errBoom},
		{name: "RetryableFalseStops", policy: retry.Policy{Retryable: func(err error) bool { return !errors.Is(err, errBoom) }},
			errs: []error{errBoom}, wantCalls: 1, wantErr: errBoom},
		{name: "RetryAfterSetsTheWait", errs: []error{retry.After(errBoom, 3*time.Second), retry.After(errBoom, time.Second)},
			wantCalls: 3, wantWaits: []time.Duration{3 * time.Second, time.Second}},
		{name: "RetryAfterBeyondMaxBackoffIsNotRetried", policy: retry.Policy{MaxBackoff: 10 * time.Second},
			errs: []error{retry.After(errBoom, time.Minute)}, wantCalls: 1, wantErr: errBoom},
		{name: "MaxElapsedStopsRetriesThatWouldEndPastIt", policy: retry.Policy{MaxAttempts: 10, MaxElapsed: 250 * time.Millisecond},
			errs: []error{
				retry.After(errBoom, 100*time.Millisecond), retry.After(errBoom, 100*time.Millisecond),
				retry.After(errBoom, 100*time.Millisecond), retry.After(errBoom, 100*time.Millisecond),
			},
			wantCalls: 3, wantErr: errBoom, wantWaits: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSleeper()
			calls := 0
			err := retry.Do(context.Background(), s.policy(tt.policy), func(ctx context.Context) error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if strings.Contains(tt.name, "Permanent") && err != errBoom {
				t.Errorf("err = %#v, want errBoom itself, unwrapped from Permanent", err)
			}
			waits := s.Waits()
			if len(waits) != tt.wantCalls-1 {
				t.Errorf("waits = %v, want %d of them", waits, tt.wantCalls-1)
			}
			if tt.wantWaits != nil && !equalDurations(waits, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", waits, tt.wantWaits)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDoBackoffWaitsStayUnderTheGrowingCeiling(t *testing.T) {
	s := newSleeper()
	p := s.policy(retry.Policy{MaxAttempts: 6, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	err := retry.Do(context.Background(), p, func(context.Context) error { return errBoom })
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want errBoom", err)
	}
	ceilings := []time.Duration{100, 200, 300, 300, 300}
	waits := s.Waits()
	if len(waits) != len(ceilings) {
		t.Fatalf("waits = %v, want %d", waits, len(ceilings))
	}
	for i, w := range waits {
		if w < 0 || w > ceilings[i]*time.Millisecond {
			t.Errorf("wait %d = %v, want within [0, %v]", i+1, w, ceilings[i]*time.Millisecond)
		}
	}
}

func TestDoStopsWhenTheContextDeadlineWouldPassDuringTheWait(t *testing.T) {
	s := newSleeper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	calls := 0
	err := retry.Do(ctx, s.policy(retry.Policy{MaxBackoff: time.Hour}), func(context.Context) error {
		calls++
		return retry.After(errBoom, 2*time.Minute)
	})
	if calls != 1 || !errors.Is(err, errBoom) || len(s.Waits()) != 0 {
		t.Fatalf("calls = %d, err = %v, waits = %v; want 1 call, errBoom, no wait", calls, err, s.Waits())
	}
}

func TestDoDoesNotRetryOnceTheCallerCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := newSleeper()
	calls := 0
	err := retry.Do(ctx, s.policy(retry.Policy{}), func(ctx context.Context) error {
		calls++
		cancel()
		return ctx.Err()
	})
	if calls != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("calls = %d, err = %v; want 1 call, context.Canceled", calls, err)
	}
}

func TestDoCancelledDuringWaitReturnsBothErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := retry.Policy{Sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}}
	err := retry.Do(ctx, p, func(context.Context) error { return errBoom })
	if !errors.Is(err, errBoom) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want it to wrap errBoom and context.Canceled", err)
	}
}

func TestDoAttemptTimeoutBoundsEachAttemptAndRetries(t *testing.T) {
	s := newSleeper()
	calls := 0
	err := retry.Do(context.Background(), s.policy(retry.Policy{AttemptTimeout: 20 * time.Millisecond}), func(ctx context.Context) error {
		calls++
		if calls == 1 {
			<-ctx.Done() // hangs until the attempt's timeout
			return ctx.Err()
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("err = %v, calls = %d; want nil after 2 calls", err, calls)
	}
}

func TestDoDefaultSleepWaitsForTheClock(t *testing.T) {
	clock := breakertest.NewClock()
	done := make(chan error, 1)
	calls := 0
	go func() {
		done <- retry.Do(context.Background(), retry.Policy{Clock: clock}, func(context.Context) error {
			calls++
			if calls == 1 {
				return retry.After(errBoom, 5*time.Second)
			}
			return nil
		})
	}()
	// Wait (bounded) until Do has set its timer on the manual clock.
	for i := 0; clock.Pending() == 0; i++ {
		if i == 5000 {
			t.Fatal("Do never waited on the clock")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Do returned %v before the clock moved", err)
	default:
	}
	clock.Advance(5 * time.Second)
	if err := <-done; err != nil || calls != 2 {
		t.Fatalf("err = %v, calls = %d; want nil after 2 calls", err, calls)
	}
}

func TestDoOnRetryReportsEachFailedAttempt(t *testing.T) {
	s := newSleeper()
	var got []string
	p := s.policy(retry.Policy{OnRetry: func(attempt int, err error, wait time.Duration) {
		got = append(got, err.Error())
	}})
	calls := 0
	_ = retry.Do(context.Background(), p, func(context.Context) error {
		calls++
		if calls < 3 {
			return retry.After(errors.New("fail"), time.Second)
		}
		return nil
	})
	if len(got) != 2 {
		t.Fatalf("OnRetry calls = %v, want 2", got)
	}
}

func TestCallReturnsTheValueOfTheSuccessfulAttempt(t *testing.T) {
	s := newSleeper()
	calls := 0
	v, err := retry.Call(context.Background(), s.policy(retry.Policy{}), func(context.Context) (int, error) {
		calls++
		if calls == 1 {
			return 0, errBoom
		}
		return 42, nil
	})
	if v != 42 || err != nil {
		t.Fatalf("Call = %d, %v; want 42, nil", v, err)
	}
}

func TestPolicyValidateNamesTheInvalidField(t *testing.T) {
	tests := []struct {
		name   string
		policy retry.Policy
		field  string
	}{
		{"NegativeMaxAttempts", retry.Policy{MaxAttempts: -1}, "MaxAttempts"},
		{"NegativeInitialBackoff", retry.Policy{InitialBackoff: -1}, "InitialBackoff"},
		{"NegativeMaxBackoff", retry.Policy{MaxBackoff: -1}, "MaxBackoff"},
		{"InitialAboveMax", retry.Policy{InitialBackoff: time.Minute, MaxBackoff: time.Second}, "InitialBackoff"},
		{"MultiplierBelowOne", retry.Policy{Multiplier: 0.5}, "Multiplier"},
		{"NegativeMaxElapsed", retry.Policy{MaxElapsed: -1}, "MaxElapsed"},
		{"NegativeAttemptTimeout", retry.Policy{AttemptTimeout: -1}, "AttemptTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if err == nil || !strings.Contains(err.Error(), "Policy."+tt.field) {
				t.Fatalf("Validate = %v, want an error naming Policy.%s", err, tt.field)
			}
			calls := 0
			if err := retry.Do(context.Background(), tt.policy, func(context.Context) error { calls++; return nil }); err == nil || calls != 0 {
				t.Fatalf("Do with an invalid policy = %v after %d calls, want the error and no call", err, calls)
			}
		})
	}
	if err := (retry.Policy{}).Validate(); err != nil {
		t.Fatalf("zero Policy: %v", err)
	}
}
