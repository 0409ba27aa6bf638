package httpbreaker_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/httpbreaker"
)

// slowLease is a fleet whose probe lease never comes: AcquireProbe waits
// until the caller's ctx is done.
type slowLease struct{ asked chan context.Context }

func (s *slowLease) Attach(*breaker.FleetLink) {}
func (s *slowLease) AcquireProbe(ctx context.Context, _ *breaker.FleetLink, _ uint64) (bool, time.Duration) {
	s.asked <- ctx
	<-ctx.Done()
	return false, 0
}

// The request's context reaches the breaker: a client that gives up while
// its probe waits for the fleet's lease gets its own error back at once.
func TestRequestContextEndsTheWaitForAProbeLease(t *testing.T) {
	up := newUpstream(t, http.StatusServiceUnavailable)
	clock := breakertest.NewClock()
	fleet := &slowLease{asked: make(chan context.Context, 1)}
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{
		FailureThreshold: 1, OpenTimeout: time.Minute, Clock: clock, Logger: discardLogger, Sync: fleet,
	}})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &httpbreaker.Transport{Next: newTransport(t), Registry: reg}}
	if code, err := get(client, context.Background(), up.URL); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("first request = %d, %v; want the upstream's 503", code, err)
	}
	clock.Advance(time.Minute) // OPEN → HALF_OPEN: the next request is a probe

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := get(client, ctx, up.URL)
		done <- err
	}()
	asked := <-fleet.asked
	cancel()
	if asked.Done() == nil {
		t.Fatal("the fleet was asked with a context that cannot end: not the request's")
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("request cancelled while waiting for a lease: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second): // a bound on a hang, not a timing assertion
		t.Fatal("the request still waits for the lease after its context was cancelled")
	}
	if hits := up.hits.Load(); hits != 1 {
		t.Fatalf("upstream saw %d requests, want 1 (the probe was never sent)", hits)
	}
}
