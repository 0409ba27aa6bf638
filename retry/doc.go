// Package retry retries a failed call with exponential backoff and full
// jitter, within a budget of attempts and time.
//
// # The model
//
// A Policy describes the budget: at most MaxAttempts attempts, each bounded by
// AttemptTimeout, all of them within MaxElapsed and the context's deadline.
// Between attempts Do waits a random time between 0 and a ceiling that starts
// at InitialBackoff and grows by Multiplier up to MaxBackoff ("full jitter":
// clients that failed together do not retry together). An error that says
// when to come back (Retry-After on a 429 or 503 response, or an error made
// with After) is honoured instead of the backoff, if the policy allows a wait
// that long.
//
// Some errors are never retried: a rejection by an open circuit breaker
// (errors.Is(err, breaker.ErrOpen)), an error marked with Permanent, and any
// error once the caller's context is done.
//
// # Retry inside, breaker outside
//
// Retry wraps the individual attempts; the circuit breaker wraps the whole
// retried call:
//
//	err := b.Do(ctx, func(ctx context.Context) error {
//		return retry.Do(ctx, policy, attempt)
//	})
//
// The breaker then counts one outcome per logical call, not one per attempt,
// so a burst of retries cannot open it by itself; and while it is open, no
// attempt is made at all. In the other order every attempt would count
// toward opening the breaker (Do still stops at its first rejection).
//
// # HTTP
//
// Transport is an http.RoundTripper that retries round trips: transport
// errors and the statuses 429, 500, 502, 503 and 504 by default. It retries
// only idempotent requests (GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or any
// request with an Idempotency-Key header, or whose context was marked with
// MarkIdempotent), rewinds request bodies with Request.GetBody, and drains and
// closes the bodies of the responses it discards. Package httpbreaker can put
// it inside a breaker.
//
// The backoff is a capped exponential with full jitter, computed in float64 so
// that long retry sequences saturate at MaxBackoff rather than overflow; the
// package imports nothing outside the standard library and breaker.
package retry
