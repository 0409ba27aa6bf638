package redisstate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

// A caller that gives up while its probe waits for the fleet's lease is let
// go at once, with its own error: not after Options.Timeout, not as a Redis
// fault (the fleet stays joined), not as a rejection.
func TestCancelledCallerEndsTheLeaseWaitWithoutAFault(t *testing.T) {
	srv := redistest.Start(t)
	// A Timeout this long makes any wait that ignores the ctx obvious.
	r := newReplica(t, srv, "replica-1", t10(50*time.Millisecond), redisstate.Options{Timeout: time.Minute})
	r.fail(10)
	eventually(t, 10*time.Second, func() bool { return r.b().State() == breaker.HalfOpen }, "HALF_OPEN after the open timeout")
	faults := r.f.Stats().Faults

	srv.Pause() // the lease request now waits for an answer that does not come
	t.Cleanup(srv.Resume)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := r.b().AllowContext(ctx)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the call reach Redis; if not, the breaker checks ctx first: the same answer
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("AllowContext after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second): // a bound on a hang, far below Options.Timeout
		t.Fatal("the probe still waits on a paused Redis after its caller's ctx was cancelled")
	}
	if s := r.f.Stats(); s.Faults != faults || s.Degraded {
		t.Fatalf("after a cancelled caller: %d faults (was %d), degraded %v; want no fault", s.Faults, faults, s.Degraded)
	}
	if snap := r.b().Snapshot(); snap.ProbesInFlight != 0 || snap.RejectedHalfOpen != 0 {
		t.Fatalf("after a cancelled wait: %d probes in flight, %d rejections; want 0, 0", snap.ProbesInFlight, snap.RejectedHalfOpen)
	}
}
