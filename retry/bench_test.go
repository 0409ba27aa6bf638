package retry_test

import (
	"context"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/retry"
)

var sink error

// BenchmarkFirstTrySuccess measures what retry.Do adds to a call that
// succeeds at once: the loop's overhead on the healthy path.
func BenchmarkFirstTrySuccess(b *testing.B) {
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink = fn(ctx)
		}
	})
	b.Run("retry.Do", func(b *testing.B) {
		p := retry.Policy{MaxAttempts: 3}
		b.ReportAllocs()
		for b.Loop() {
			sink = retry.Do(ctx, p, fn)
		}
	})
	b.Run("retry.Do/MaxElapsed", func(b *testing.B) {
		p := retry.Policy{MaxAttempts: 3, MaxElapsed: time.Minute}
		b.ReportAllocs()
		for b.Loop() {
			sink = retry.Do(ctx, p, fn)
		}
	})
	b.Run("retry.Do/AttemptTimeout", func(b *testing.B) {
		p := retry.Policy{MaxAttempts: 3, AttemptTimeout: time.Minute}
		b.ReportAllocs()
		for b.Loop() {
			sink = retry.Do(ctx, p, fn)
		}
	})
}
