package redisstate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
)

// Every fleet transition says which replica's call made it, on every
// replica; an opening carries the failures that led to it, each with the
// replica that reported it and that replica's description.
func TestEveryReplicaLearnsWhichReplicaDecidedAndWhatItSaw(t *testing.T) {
	srv := redistest.Start(t)
	var f fleet
	for i := range 3 {
		name := fmt.Sprintf("replica-%d", i+1)
		f = append(f, newReplica(t, srv, name, t10(time.Minute), redisstate.Options{
			Describe: func(string) string { return "503/" + name }}))
	}
	for _, r := range f {
		r.b()
	}
	// 4 + 3 + 3: replica-3's 3rd failure is the fleet's 10th.
	// Each replica's reports reach Redis before the next replica's: they
	// are flushed by each replica's own loop, in no order between replicas.
	f[0].fail(4)
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 4 }, "Redis counts 4 failures")
	f[1].fail(3)
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 7 }, "Redis counts 7 failures")
	f[2].fail(3)
	f.wantState(t, breaker.Open, "10 failures over 3 replicas")
	for _, r := range f {
		eventually(t, 5*time.Second, func() bool { return len(r.transitions()) == 1 }, r.name+" delivers the OPEN")
		tr := r.transitions()[0]
		if tr.Reason != breaker.ReasonFleet || tr.DecidedBy != "replica-3" {
			t.Fatalf("%s: %+v, want the fleet's OPEN decided by replica-3 (even on replica-3: its own counts wait for the fleet)", r.name, tr)
		}
		o, ok := r.f.Opening(key)
		if !ok || o.DecidedBy != "replica-3" || o.State != breaker.Open || o.Reason != breaker.ReasonFailureThreshold || len(o.Evidence) != 10 {
			t.Fatalf("%s: Opening = %+v, %v; want replica-3's OPEN with the 10 failures", r.name, o, ok)
		}
		// Newest first: replica-3's 3, replica-2's 3, replica-1's 4.
		for i, e := range o.Evidence {
			want := "replica-1"
			switch {
			case i < 3:
				want = "replica-3"
			case i < 6:
				want = "replica-2"
			}
			if e.Replica != want || e.Detail != "503/"+want || e.At.IsZero() {
				t.Fatalf("%s: evidence %d = %+v, want a failure reported by %s, described by it", r.name, i, e, want)
			}
		}
	}

	// An operator's reset on replica-2 is decided by replica-2.
	f[1].b().Reset()
	f.wantState(t, breaker.Closed, "reset on replica-2")
	for _, r := range []*replica{f[0], f[2]} {
		eventually(t, 5*time.Second, func() bool { return len(r.transitions()) == 2 }, r.name+" delivers the CLOSED")
		if tr := r.transitions()[1]; tr.Reason != breaker.ReasonFleet || tr.DecidedBy != "replica-2" || tr.FleetReason != breaker.ReasonReset {
			t.Fatalf("%s: %+v, want the fleet's CLOSED decided by replica-2", r.name, tr)
		}
	}
	if o, _ := f[0].f.Opening(key); o.DecidedBy != "replica-2" || len(o.Evidence) != 0 {
		t.Fatalf("Opening after the reset = %+v, want replica-2's, without evidence", o)
	}
}

// A failed probe reopens the fleet; its evidence is that probe alone.
func TestAFailedProbesReopeningCarriesThatProbeAsEvidence(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 2, t10(50*time.Millisecond), redisstate.Options{Describe: func(string) string { return "timeout/5000ms" }})
	f[0].fail(10)
	f.wantState(t, breaker.Open, "10 failures")
	eventually(t, 5*time.Second, func() bool { return f[1].b().State() == breaker.HalfOpen }, "replica-2 half-open")
	if err := f[1].b().Do(context.Background(), func(context.Context) error { return errUpstream }); err != errUpstream {
		t.Fatalf("probe on replica-2: %v, want it to run", err)
	}
	eventually(t, 5*time.Second, func() bool {
		o, _ := f[0].f.Opening(key)
		return o.Reason == breaker.ReasonProbeFailed
	}, "replica-1 learns of the reopening")
	o, _ := f[0].f.Opening(key)
	if o.DecidedBy != "replica-2" || len(o.Evidence) != 1 || o.Evidence[0].Replica != "replica-2" || o.Evidence[0].Detail != "timeout/5000ms" {
		t.Fatalf("Opening = %+v, want replica-2's reopening with its failed probe as the only evidence", o)
	}
}

// Evidence Redis holds that no script wrote (a hostile or broken writer, a
// key of another type) never stops the fleet: bad entries are left out and
// counted in Stats.Malformed, the opening applies everywhere with the good
// ones, and a key of another type is replaced.
func TestHostileEvidenceIsLeftOutAndCountedAndTheFleetStillOpens(t *testing.T) {
	srv := redistest.Start(t)
	f := newFleet(t, srv, 2, t10(time.Minute), redisstate.Options{Describe: func(string) string { return "503/1ms" }})
	ctx := context.Background()
	ev := fleetHash() + ":e"
	f[0].fail(9)
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 9 }, "Redis counts 9 failures")
	srv.Client().LPush(ctx, ev, "no-time-here", "replica-x 12 "+strings.Repeat("x", 5000), "bad\x01name 5 x", "replica-x -3 x")
	f[0].fail(1)
	f.wantState(t, breaker.Open, "the 10th failure opens the fleet")
	o, _ := f[1].f.Opening(key)
	if o.DecidedBy != "replica-1" || len(o.Evidence) != 6 {
		t.Fatalf("Opening = %+v, want replica-1's, with the 6 good entries of the 10 kept", o)
	}
	for _, e := range o.Evidence {
		if e.Replica != "replica-1" || e.Detail != "503/1ms" {
			t.Fatalf("evidence entry %+v, want only replica-1's failures", e)
		}
	}
	if m := f[1].f.Stats().Malformed; m == 0 {
		t.Fatal("the hostile entries were not counted in Stats.Malformed")
	}

	// A key of another type in the evidence's place: replaced, counting goes on.
	f[1].b().Reset()
	f.wantState(t, breaker.Closed, "reset")
	f[0].fail(5)
	eventually(t, 5*time.Second, func() bool { return streak(srv) == 5 }, "Redis counts 5 failures")
	srv.Client().Del(ctx, ev)
	srv.Client().HSet(ctx, ev, "not", "a list")
	f[0].fail(5)
	f.wantState(t, breaker.Open, "10 failures with a hash where the evidence list goes")
	if o, _ := f[1].f.Opening(key); len(o.Evidence) != 5 {
		t.Fatalf("Opening = %+v, want the 5 failures reported since the list was replaced", o)
	}
}
