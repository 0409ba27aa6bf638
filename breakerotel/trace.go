package breakerotel

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/breakerbox/breakerbox/breaker"
)

// Span event names.
const (
	RejectedEvent   = "breaker.rejected"
	TransitionEvent = "breaker.transition"
)

// Do runs fn under b, as b.Do does, and records on the span in ctx, if it
// is recording:
//
//   - a breaker.rejected event (breaker.name, breaker.state,
//     breaker.retry_after in seconds) when b refused the call;
//   - a breaker.transition event (breaker.name, breaker.transition.from,
//     .to and .reason), at the transition's time, when b changed state
//     during the call; if it changed more than once, the last change;
//   - the span attributes breaker.name and breaker.state (the state the
//     breaker is left in) in both cases.
//
// Without a recording span Do is b.Do plus one context lookup.
func Do(ctx context.Context, b *breaker.Breaker, fn func(context.Context) error) error {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return b.Do(ctx, fn)
	}
	before := b.State()
	ran := false
	err := b.Do(ctx, func(ctx context.Context) error {
		ran = true
		return fn(ctx)
	})
	var open *breaker.OpenError
	if !ran && errors.As(err, &open) {
		span.AddEvent(RejectedEvent, trace.WithAttributes(NameKey.String(b.Name()),
			StateKey.String(open.State.String()), RetryAfterKey.Float64(open.RetryAfter().Seconds())))
		span.SetAttributes(NameKey.String(b.Name()), StateKey.String(b.State().String()))
		return err
	}
	if b.State() != before {
		t := b.Snapshot().LastTransition
		span.AddEvent(TransitionEvent, trace.WithTimestamp(t.At), trace.WithAttributes(transitionAttributes(t)...))
		span.SetAttributes(NameKey.String(b.Name()), StateKey.String(t.To.String()))
	}
	return err
}

// Call is Do for a function that returns a value.
func Call[T any](ctx context.Context, b *breaker.Breaker, fn func(context.Context) (T, error)) (T, error) {
	var v T
	err := Do(ctx, b, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	})
	return v, err
}

func transitionAttributes(t breaker.Transition) []attribute.KeyValue {
	return []attribute.KeyValue{
		NameKey.String(t.Name),
		TransitionFromKey.String(t.From.String()),
		TransitionToKey.String(t.To.String()),
		TransitionReasonKey.String(t.Reason.String()),
	}
}
