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

// TestAReplicaWhoseLastProbeIsStillQueuedDoesNotCloseAheadOfTheFleet is the
// flaky "4 probes reached the upstream before the fleet closed, want 3" of
// the three-binaries test, made deterministic. A probe's outcome goes to
// Redis through the asynchronous outcome queue; the replica's breaker
// counted it at once. A replica that ran all 3 probes closed on its own
// count while its 3rd success was still queued, and its next call reached
// the upstream while the fleet was HALF_OPEN with 2 successes: a 4th probe,
// with never more than one in flight. (Its next lease could not be the
// cause: the unreported probe still holds its lease in Redis, which
// refuses a second one.)
func TestAReplicaWhoseLastProbeIsStillQueuedDoesNotCloseAheadOfTheFleet(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 2, t10(50*time.Millisecond), redisstate.Options{})
	r1 := f[0]
	r1.fail(10)
	f.wantState(t, breaker.Open, "10 failures")
	eventually(t, 5*time.Second, func() bool { return r1.b().State() == breaker.HalfOpen }, "replica-1 half-open")

	ctx := context.Background()
	fleetState := func() (string, int) {
		h, _ := srv.Client().HMGet(ctx, fleetHash(), "st", "sc").Result()
		st, _ := h[0].(string)
		sc := 0
		if s, ok := h[1].(string); ok {
			for _, c := range s {
				sc = sc*10 + int(c-'0')
			}
		}
		return st, sc
	}
	// calls made while Redis says the fleet is not CLOSED: probes, for the
	// recovering upstream.
	probes := 0
	upstream := func(context.Context) error {
		if st, _ := fleetState(); st != "closed" {
			probes++
		}
		return nil
	}
	probe := func(r *replica) error { return r.b().Do(ctx, upstream) }

	for i := 1; i <= 2; i++ {
		if err := probe(r1); err != nil {
			t.Fatalf("probe %d on replica-1: %v", i, err)
		}
		eventually(t, 5*time.Second, func() bool { _, sc := fleetState(); return sc == i }, "Redis counts the successful probe")
	}

	held, release := r1.f.HoldFlush()
	defer release()
	if err := probe(r1); err != nil {
		t.Fatalf("probe 3 on replica-1: %v", err)
	}
	<-held // the 3rd success is queued, not yet in Redis
	if st, sc := fleetState(); st != "half_open" || sc != 2 {
		t.Fatalf("fleet %s with %d successes while replica-1's 3rd success is queued, want half_open with 2", st, sc)
	}
	if st := r1.b().State(); st != breaker.HalfOpen {
		t.Fatalf("replica-1 is %v while the fleet it shares is HALF_OPEN with 2 of 3 successes counted, want HALF_OPEN", st)
	}
	// Neither replica gets a call through: replica-1's last probe still
	// holds the fleet's only lease.
	for _, r := range f {
		if err := probe(r); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("%s: call while the fleet waits for a probe's report: %v, want a rejection", r.name, err)
		}
	}
	release()
	f.wantState(t, breaker.Closed, "the 3rd success reaches Redis and closes the fleet")
	for _, r := range f {
		eventually(t, 5*time.Second, func() bool { // delivered just after the state is visible
			tr := r.transitions()
			return len(tr) > 0 && tr[len(tr)-1].To == breaker.Closed
		}, r.name+" delivers the CLOSED")
		tr := r.transitions()
		last := tr[len(tr)-1]
		if last.To != breaker.Closed || last.Reason != breaker.ReasonFleet || last.FleetReason != breaker.ReasonProbesSucceeded {
			t.Fatalf("%s: last transition %+v, want the fleet's CLOSED for probes_succeeded", r.name, last)
		}
	}
	if probes != 3 {
		t.Fatalf("%d calls reached the upstream while the fleet was not CLOSED, want exactly HalfOpenSuccesses = 3", probes)
	}
}
