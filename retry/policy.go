package retry

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// Defaults for a zero Policy field.
const (
	DefaultMaxAttempts    = 3
	DefaultInitialBackoff = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultMultiplier     = 2
)

// Policy is a retry budget. A zero field means the default, so the zero
// Policy makes 3 attempts with waits of up to 100 ms, then up to 200 ms, and
// no time limit other than the context's.
type Policy struct {
	// MaxAttempts is the number of attempts, the first included. 0 means 3;
	// 1 means no retry.
	MaxAttempts int

	// InitialBackoff is the ceiling of the first wait. 0 means 100 ms.
	InitialBackoff time.Duration

	// MaxBackoff caps every wait, Retry-After included: a call that is told
	// to come back later than MaxBackoff is not retried, and its error (or
	// response) goes back to the caller, who can read the Retry-After. 0
	// means 10 s.
	MaxBackoff time.Duration

	// Multiplier is the growth of the ceiling per retry, ≥ 1. 0 means 2.
	Multiplier float64

	// MaxElapsed bounds the time from the start of the first attempt to the
	// start of the last one: no retry is started, and no wait begun, that
	// would end past it. 0 means no bound other than the context's deadline.
	MaxElapsed time.Duration

	// AttemptTimeout, if positive, bounds each attempt through its context.
	// An attempt that times out is retried like any failure while the
	// caller's context is still live.
	AttemptTimeout time.Duration

	// Retryable reports whether an error is worth another attempt. It is
	// asked only about errors that may be retried at all (not rejections by
	// a breaker, not Permanent errors, not once the context is done). nil
	// means every such error is retryable.
	Retryable func(error) bool

	// OnRetry, if set, is called before each wait with the number of the
	// attempt that failed (1 for the first), its error, and the wait.
	OnRetry func(attempt int, err error, wait time.Duration)

	// Clock is the source of time for MaxElapsed, Retry-After dates and the
	// waits. nil means the system clock. AttemptTimeout and the context's
	// deadline are context deadlines, so they run on the system clock.
	Clock breaker.Clock

	// Sleep, if set, replaces the wait between attempts: it must return once
	// d has passed, or ctx's error if ctx is done first. Tests use it to
	// record the waits instead of sleeping.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Validate reports the first invalid field, naming it and the allowed range.
// Zero values are valid: they mean the default.
func (p Policy) Validate() error {
	_, err := p.resolve()
	return err
}

func fieldErr(field string, v any, want string) error {
	return fmt.Errorf("retry: Policy.%s = %v: %s", field, v, want)
}

// resolve validates p and fills in defaults. It is cheap enough for every
// call: a first-try success pays only for this and the call.
func (p Policy) resolve() (Policy, error) {
	switch {
	case p.MaxAttempts < 0:
		return p, fieldErr("MaxAttempts", p.MaxAttempts, "must be ≥ 1 (0 means the default, 3)")
	case p.InitialBackoff < 0:
		return p, fieldErr("InitialBackoff", p.InitialBackoff, "must be ≥ 0 (0 means the default, 100ms)")
	case p.MaxBackoff < 0:
		return p, fieldErr("MaxBackoff", p.MaxBackoff, "must be ≥ 0 (0 means the default, 10s)")
	case math.IsNaN(p.Multiplier) || math.IsInf(p.Multiplier, 0) || p.Multiplier != 0 && p.Multiplier < 1:
		return p, fieldErr("Multiplier", p.Multiplier, "must be ≥ 1 (0 means the default, 2)")
	case p.MaxElapsed < 0:
		return p, fieldErr("MaxElapsed", p.MaxElapsed, "must be ≥ 0 (0 means no bound but the context's)")
	case p.AttemptTimeout < 0:
		return p, fieldErr("AttemptTimeout", p.AttemptTimeout, "must be ≥ 0 (0 means no per-attempt timeout)")
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.InitialBackoff == 0 {
		p.InitialBackoff = DefaultInitialBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	if p.InitialBackoff > p.MaxBackoff {
		return p, fieldErr("InitialBackoff", p.InitialBackoff, fmt.Sprintf("must be ≤ MaxBackoff (%v)", p.MaxBackoff))
	}
	if p.Multiplier == 0 {
		p.Multiplier = DefaultMultiplier
	}
	if p.Clock == nil {
		p.Clock = breaker.SystemClock{}
	}
	return p, nil
}
