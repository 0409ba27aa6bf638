package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// Do calls fn until it succeeds or the policy says to stop, and returns nil
// or the last attempt's error (unwrapped from Permanent). If the context is
// done during a wait, the error wraps both the last attempt's error and the
// context's, so errors.Is(err, context.Canceled) tells that the caller gave
// up. An invalid policy is reported without calling fn.
//
// A first-try success costs the call plus a copy of the policy: no clock
// read unless MaxElapsed is set, and no allocation unless AttemptTimeout is.
func Do(ctx context.Context, p Policy, fn func(context.Context) error) error {
	p, err := p.resolve()
	if err != nil {
		return err
	}
	l := newLoop(&p)
	for attempt := 1; ; attempt++ {
		err := p.attempt(ctx, fn)
		if err == nil {
			return nil
		}
		wait, ok := l.next(ctx, attempt, err, p.retryable(err))
		if !ok {
			return unwrapPermanent(err)
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, wait)
		}
		if serr := p.sleep(ctx, wait); serr != nil {
			return stopped(err, serr)
		}
	}
}

// Call is Do for a function that returns a value.
func Call[T any](ctx context.Context, p Policy, fn func(context.Context) (T, error)) (T, error) {
	var v T
	err := Do(ctx, p, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}

// Permanent marks err as not worth retrying: Do returns err at once. It
// returns nil for nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func unwrapPermanent(err error) error {
	if pe, ok := err.(*permanentError); ok {
		return pe.err
	}
	return err
}

// After marks err as retryable no sooner than d from now, as a Retry-After
// header does. If d exceeds the policy's MaxBackoff, or the time left, the
// call is not retried. It returns nil for nil.
func After(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &afterError{err: err, after: max(d, 0)}
}

type afterError struct {
	err   error
	after time.Duration
}

func (e *afterError) Error() string { return e.err.Error() }
func (e *afterError) Unwrap() error { return e.err }

// RetryAfter returns how long to wait before the next attempt.
func (e *afterError) RetryAfter() time.Duration { return e.after }

// retryAfterer is an error that says when to come back: After's errors and
// the HTTP transport's status errors. (*breaker.OpenError has the same
// method, but a rejection is never retried.)
type retryAfterer interface {
	error
	RetryAfter() time.Duration
}

func stopped(last, ctxErr error) error {
	return fmt.Errorf("%w (retry stopped: %w)", last, ctxErr)
}

func (p *Policy) attempt(ctx context.Context, fn func(context.Context) error) error {
	if p.AttemptTimeout <= 0 {
		return fn(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, p.AttemptTimeout)
	defer cancel()
	return fn(ctx)
}

func (p *Policy) retryable(err error) bool {
	var pe *permanentError
	if errors.As(err, &pe) {
		return false
	}
	return p.Retryable == nil || p.Retryable(err)
}

// sleep waits d or until ctx is done.
func (p *Policy) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	if d <= 0 {
		return ctx.Err()
	}
	if _, ok := p.Clock.(breaker.SystemClock); ok {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done := make(chan struct{})
	stop := p.Clock.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		stop()
		return ctx.Err()
	}
}

// loop is the state of one retried call between attempts.
type loop struct {
	p       *Policy
	start   time.Time // read only with MaxElapsed
	retries int
}

func newLoop(p *Policy) loop {
	l := loop{p: p}
	if p.MaxElapsed > 0 {
		l.start = p.Clock.Now()
	}
	return l
}

// next decides whether the attempt numbered attempt, which failed with err,
// is followed by another, and after how long. retryable is the caller's
// verdict on err; next adds what is never retried and the budget.
func (l *loop) next(ctx context.Context, attempt int, err error, retryable bool) (time.Duration, bool) {
	if !retryable || attempt >= l.p.MaxAttempts || ctx.Err() != nil || errors.Is(err, breaker.ErrOpen) {
		return 0, false
	}
	var wait time.Duration
	var ra retryAfterer
	if errors.As(err, &ra) {
		wait = ra.RetryAfter()
		if wait > l.p.MaxBackoff {
			return 0, false // retrying sooner than asked would only be refused again
		}
	} else {
		wait = l.jitter()
	}
	if l.p.MaxElapsed > 0 && l.p.Clock.Now().Add(wait).Sub(l.start) >= l.p.MaxElapsed {
		return 0, false
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
		return 0, false // the context would end during the wait or right after it
	}
	return wait, true
}

// ceiling returns the upper bound of the next wait:
// min(InitialBackoff × Multiplier^retries, MaxBackoff), computed in float64
// so that a large exponent saturates at MaxBackoff instead of overflowing.
func (l *loop) ceiling() time.Duration {
	c := float64(l.p.InitialBackoff) * math.Pow(l.p.Multiplier, float64(l.retries))
	l.retries++
	if c >= float64(l.p.MaxBackoff) || math.IsNaN(c) {
		return l.p.MaxBackoff
	}
	return time.Duration(c)
}

// jitter is "full jitter": a wait drawn uniformly from [0, ceiling], so that
// clients that failed together spread their retries over the whole interval.
func (l *loop) jitter() time.Duration {
	c := l.ceiling()
	if c <= 0 {
		return 0
	}
	return rand.N(c + 1)
}
