package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

// TestConcurrentTransitionsExactlyOnce lets many goroutines drive one breaker
// through many transitions while a controller goroutine moves the manual
// clock in bounded steps (firing open and probe timeouts) and now and then
// resets, forces open or disables the breaker. It checks that
//   - every transition is delivered exactly once and in order: the events
//     chain (each From is the previous To, generations go up by one) and
//     agree with Snapshot's transition matrix and final state;
//   - the listener is never called concurrently;
//   - HALF_OPEN never has more than HalfOpenProbes calls in flight.
//
// A call counts as a probe only when the breaker's generation was the same,
// and its state HALF_OPEN, just before asking for admission and just after
// being admitted: then no transition happened in between, so the call was
// admitted in that HALF_OPEN episode, which admits probes only. Calls whose
// admission straddles a transition are not counted (they can only make the
// count lower, never raise a false alarm). The in-flight count is kept per
// generation, because a probe of an earlier episode that is still running
// no longer holds a slot once the breaker has moved on. Within one episode,
// a counted call holds its slot from admission until after it leaves the
// count, so the count can exceed HalfOpenProbes only if the breaker admitted
// too many probes.
func TestConcurrentTransitionsExactlyOnce(t *testing.T) {
	const (
		probes       = 2
		probeTimeout = 4 * time.Second
	)
	workers, iters := 8, 20000
	if testing.Short() || concRace {
		iters = 10000
	}

	clk := breakertest.NewClock()
	var (
		b          *breaker.Breaker
		evMu       sync.Mutex
		events     []breaker.Transition
		inListener atomic.Int32
		overlaps   atomic.Int32
	)
	cfg := breaker.Config{
		Name: "concurrent", FailureThreshold: 3, OpenTimeout: 10 * time.Second, HalfOpenSuccesses: 2,
		HalfOpenProbes: probes, ProbeTimeout: probeTimeout, Clock: clk, Logger: slog.New(slog.DiscardHandler),
		OnTransition: func(tr breaker.Transition) {
			if inListener.Add(1) != 1 {
				overlaps.Add(1)
			}
			evMu.Lock()
			events = append(events, tr)
			evMu.Unlock()
			if tr.Generation%5 == 0 {
				_ = b.Snapshot() // the listener may call the breaker
				_ = b.State()
			}
			inListener.Add(-1)
		},
	}
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}

	var (
		outage     atomic.Bool // the protected service is failing
		done       atomic.Int32
		inFlight   sync.Map // generation → *atomic.Int32: counted probes in flight
		violations atomic.Int32
		violMu     sync.Mutex
		violMsg    []string
		probesSeen atomic.Int64
		admitted   atomic.Int64
		rejected   atomic.Int64
	)
	violation := func(format string, args ...any) {
		violations.Add(1)
		violMu.Lock()
		if len(violMsg) < 10 {
			violMsg = append(violMsg, fmt.Sprintf(format, args...))
		}
		violMu.Unlock()
	}
	// body is what a protected call does once admitted: if it certainly is
	// a probe, it is counted in flight while it runs.
	body := func(rng *rand.Rand, pre, post breaker.Snapshot) {
		admitted.Add(1)
		if post.ProbesInFlight > probes {
			violation("Snapshot.ProbesInFlight = %d > HalfOpenProbes = %d", post.ProbesInFlight, probes)
		}
		if pre.Generation != post.Generation || post.State != breaker.HalfOpen {
			for range rng.IntN(3) {
				runtime.Gosched()
			}
			return
		}
		probesSeen.Add(1)
		v, _ := inFlight.LoadOrStore(post.Generation, new(atomic.Int32))
		c := v.(*atomic.Int32)
		if n := c.Add(1); n > probes {
			violation("generation %d: %d probes in flight, HalfOpenProbes = %d", post.Generation, n, probes)
		}
		if rng.IntN(20) == 0 {
			// A slow probe: hold the slot until the controller has moved the
			// clock past the probe timeout (bounded: no sleeping, no hang).
			until := clk.Now().Add(probeTimeout)
			for i := 0; i < 20000 && clk.Now().Before(until); i++ {
				runtime.Gosched()
			}
		} else {
			for range rng.IntN(8) {
				runtime.Gosched()
			}
		}
		c.Add(-1)
	}
	boom := errors.New("boom")
	outcome := func(rng *rand.Rand) error {
		failPct := 5
		if outage.Load() {
			failPct = 85
		}
		switch n := rng.IntN(100); {
		case n < failPct:
			return boom
		case n < failPct+5:
			return context.Canceled // ignored
		}
		return nil
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			ctx := context.Background()
			for range iters {
				switch rng.IntN(3000) {
				case 0:
					b.Reset()
					continue
				case 1:
					b.ForceOpen()
					continue
				}
				// A rejected caller backs off until the clock moves (bounded),
				// so that the workers keep pace with the controller.
				backOff := func() {
					rejected.Add(1)
					now := clk.Now()
					for i := 0; i < 1000 && clk.Now().Equal(now); i++ {
						runtime.Gosched()
					}
				}
				pre := b.Snapshot()
				res := outcome(rng)
				if rng.IntN(2) == 0 { // two-step form
					tk, err := b.Allow()
					if err != nil {
						if !errors.Is(err, breaker.ErrOpen) {
							violation("Allow: %v does not satisfy errors.Is(err, ErrOpen)", err)
						}
						backOff()
						continue
					}
					body(rng, pre, b.Snapshot())
					tk.Done(res)
					continue
				}
				err := b.Do(ctx, func(context.Context) error {
					body(rng, pre, b.Snapshot())
					return res
				})
				switch {
				case errors.Is(err, breaker.ErrOpen):
					backOff()
				case err != res:
					violation("Do returned %v, want the function's %v", err, res)
				}
			}
		}()
	}

	// The controller moves the clock in bounded steps until every worker is
	// done, switching the service between healthy and failing now and then.
	ctrl := rand.New(rand.NewPCG(7, 7))
	steps := 0
	for done.Load() < int32(workers) {
		steps++
		clk.Advance(time.Duration(100+ctrl.IntN(900)) * time.Millisecond)
		if ctrl.IntN(40) == 0 {
			outage.Store(!outage.Load())
		}
		switch ctrl.IntN(300) {
		case 0:
			b.ForceClosed()
		case 1, 2, 3:
			b.Reset()
		}
		if s := b.Snapshot(); s.ProbesInFlight > probes {
			violation("controller: Snapshot.ProbesInFlight = %d > %d", s.ProbesInFlight, probes)
		}
		runtime.Gosched()
	}
	wg.Wait()

	for _, m := range violMsg {
		t.Error(m)
	}
	if n := violations.Load(); n > 0 {
		t.Fatalf("%d violations", n)
	}
	if n := overlaps.Load(); n > 0 {
		t.Fatalf("the transition listener was called concurrently %d times", n)
	}

	evMu.Lock()
	ev := append([]breaker.Transition(nil), events...)
	evMu.Unlock()
	s := b.Snapshot()
	var counted [5][5]uint64
	for i, e := range ev {
		prevTo, prevGen := breaker.Closed, uint64(0)
		if i > 0 {
			prevTo, prevGen = ev[i-1].To, ev[i-1].Generation
			if e.At.Before(ev[i-1].At) {
				t.Fatalf("event %d at %v is earlier than event %d at %v", i, e.At, i-1, ev[i-1].At)
			}
		}
		if e.From != prevTo || e.Generation != prevGen+1 || e.From == e.To {
			t.Fatalf("event %d = %v→%v (%v) generation %d; previous ended in %v at generation %d\nevents around it: %v",
				i, e.From, e.To, e.Reason, e.Generation, prevTo, prevGen, fmtTransitions(ev[max(0, i-5):min(len(ev), i+3)]))
		}
		counted[e.From][e.To]++
	}
	for _, from := range breaker.States() {
		for _, to := range breaker.States() {
			if got := s.TransitionCount(from, to); got != counted[from][to] {
				t.Fatalf("%v→%v: %d events, Snapshot.TransitionCount = %d", from, to, counted[from][to], got)
			}
		}
	}
	if uint64(len(ev)) != s.Generation {
		t.Fatalf("%d events, generation %d", len(ev), s.Generation)
	}
	if len(ev) > 0 && (ev[len(ev)-1].To != s.State || ev[len(ev)-1].To != b.State()) {
		t.Fatalf("last event ends in %v, breaker is %v", ev[len(ev)-1].To, s.State)
	}
	t.Logf("%d workers × %d calls, %d clock steps: %d admitted (%d counted as probes), %d rejected, %d transitions; "+
		"closed→open %d, open→half_open %d, half_open→closed %d, half_open→open %d (probe timeouts and failures)",
		workers, iters, steps, admitted.Load(), probesSeen.Load(), rejected.Load(), len(ev),
		counted[breaker.Closed][breaker.Open], counted[breaker.Open][breaker.HalfOpen],
		counted[breaker.HalfOpen][breaker.Closed], counted[breaker.HalfOpen][breaker.Open])
	if counted[breaker.Closed][breaker.Open] == 0 || counted[breaker.Open][breaker.HalfOpen] == 0 ||
		counted[breaker.HalfOpen][breaker.Closed]+counted[breaker.HalfOpen][breaker.Open] == 0 || probesSeen.Load() == 0 {
		t.Fatalf("the run did not go through open, half-open and back: %v (probes counted %d)", counted, probesSeen.Load())
	}
}

// TestConcurrentTripExactlyOnce makes many goroutines fail at once on a
// CLOSED breaker, then many race for the probe slots: exactly one
// CLOSED→OPEN event, and at most HalfOpenProbes admissions in HALF_OPEN.
func TestConcurrentTripExactlyOnce(t *testing.T) {
	const goroutines, probes = 16, 3
	for round := range 50 {
		clk := breakertest.NewClock()
		var mu sync.Mutex
		var ev []breaker.Transition
		b, err := breaker.New(breaker.Config{Name: "trip", FailureThreshold: 4, HalfOpenProbes: probes, Clock: clk,
			Logger: slog.New(slog.DiscardHandler), OnTransition: func(tr breaker.Transition) {
				mu.Lock()
				ev = append(ev, tr)
				mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_ = b.Do(context.Background(), func(context.Context) error { return errors.New("down") })
			}()
		}
		close(start)
		wg.Wait()
		if b.State() != breaker.Open || len(ev) != 1 || ev[0].From != breaker.Closed || ev[0].To != breaker.Open {
			t.Fatalf("round %d: state %v, events %v; want exactly one closed→open", round, b.State(), fmtTransitions(ev))
		}

		clk.Advance(b.Config().OpenTimeout)
		var admittedN atomic.Int32
		tickets := make(chan breaker.Ticket, goroutines)
		start = make(chan struct{})
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if tk, err := b.Allow(); err == nil {
					admittedN.Add(1)
					tickets <- tk
				} else if !errors.Is(err, breaker.ErrOpen) {
					t.Errorf("Allow: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(tickets)
		if n := admittedN.Load(); n != probes {
			t.Fatalf("round %d: %d calls admitted in HALF_OPEN, want HalfOpenProbes = %d", round, n, probes)
		}
		if s := b.Snapshot(); s.ProbesInFlight != probes {
			t.Fatalf("round %d: ProbesInFlight = %d, want %d", round, s.ProbesInFlight, probes)
		}
		// All probes fail at once: exactly one half_open→open.
		start = make(chan struct{})
		for tk := range tickets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tk.Report(breaker.Failure)
			}()
		}
		close(start)
		wg.Wait()
		if len(ev) != 3 || ev[2].From != breaker.HalfOpen || ev[2].To != breaker.Open || ev[2].Reason != breaker.ReasonProbeFailed {
			t.Fatalf("round %d: events %v; want closed→open, open→half_open, half_open→open", round, fmtTransitions(ev))
		}
	}
}

// TestRegistryRacingFirstGet: goroutines that race to Get a key that does
// not exist yet all get the same *Breaker.
func TestRegistryRacingFirstGet(t *testing.T) {
	clk := breakertest.NewClock()
	r, err := breaker.NewRegistry(breaker.RegistryConfig{
		Default:  breaker.Config{Clock: clk, Logger: slog.New(slog.DiscardHandler)},
		Profiles: map[string]breaker.Config{"genesys": {FailureThreshold: 10, HalfOpenSuccesses: 3, HalfOpenProbes: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, keys = 16, 100
	key := func(k int) string {
		if k%2 == 0 {
			return fmt.Sprintf("genesys/region-%d", k)
		}
		return fmt.Sprintf("svc-%d", k)
	}

	// One key at a time, every goroutine released at once.
	for k := range keys / 2 {
		start := make(chan struct{})
		got := make([]*breaker.Breaker, goroutines)
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[g], _ = r.Get(key(k)) // a nil breaker fails the check below
			}()
		}
		close(start)
		wg.Wait()
		for g, b := range got {
			if b == nil || b != got[0] {
				t.Fatalf("key %q: goroutine %d got breaker %p, goroutine 0 got %p", key(k), g, b, got[0])
			}
		}
	}

	// All the remaining keys at once, each goroutine in its own order.
	start := make(chan struct{})
	got := make([][]*breaker.Breaker, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[g] = make([]*breaker.Breaker, keys)
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for _, k := range rng.Perm(keys) {
				got[g][k], _ = r.Get(key(k))
			}
		}()
	}
	close(start)
	wg.Wait()

	for k := range keys {
		want, ok := r.Lookup(key(k))
		if !ok {
			t.Fatalf("Lookup(%q): not found", key(k))
		}
		for g := range goroutines {
			if got[g][k] != want {
				t.Fatalf("key %q: goroutine %d got %p, registry holds %p", key(k), g, got[g][k], want)
			}
		}
		if want.Name() != key(k) {
			t.Fatalf("key %q: breaker named %q", key(k), want.Name())
		}
		wantThreshold := 5
		if k%2 == 0 {
			wantThreshold = 10 // the genesys profile
		}
		if c := want.Config(); c.FailureThreshold != wantThreshold {
			t.Fatalf("key %q: FailureThreshold %d, want %d", key(k), c.FailureThreshold, wantThreshold)
		}
	}
	if all := r.All(); len(all) != keys {
		t.Fatalf("All() has %d breakers, want %d", len(all), keys)
	}
}
