//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/queuegate"
)

// ScenarioRegions are the queues the scenarios below use, one each; an
// adapter's test declares them with Regions.
var ScenarioRegions = []string{"long-outage", "drain", "cut-short", "in-hand", "two-probes"}

// MaxRetries is the adapters' default retry budget, which LongOutage outlasts.
const MaxRetries = 5

var errDown = errors.New("503 Service Unavailable")

// recorder counts handler calls per id and when they happened.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]time.Time
	ok    map[string]int
	ch    chan string // each successful id
}

func newRecorder() *recorder {
	return &recorder{calls: map[string][]time.Time{}, ok: map[string]int{}, ch: make(chan string, 100)}
}

func (r *recorder) call(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[id] = append(r.calls[id], time.Now())
	return len(r.calls[id])
}

func (r *recorder) success(id string) {
	r.mu.Lock()
	r.ok[id]++
	r.mu.Unlock()
	r.ch <- id
}

func (r *recorder) times(id string) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Time(nil), r.calls[id]...)
}

func (r *recorder) successes(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok[id]
}

// await waits for a success of id, or fails the test at ctx's end.
func (r *recorder) await(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	for {
		select {
		case got := <-r.ch:
			if got == id {
				return
			}
		case <-ctx.Done():
			t.Fatalf("%s never succeeded; handler calls at %v", id, r.times(id))
		}
	}
}

func newBreaker(t *testing.T, c breaker.Config) *breaker.Breaker {
	t.Helper()
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := breaker.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newGate(t *testing.T, c queuegate.Config) *queuegate.Gate {
	t.Helper()
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := queuegate.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func deadDelta(t *testing.T, b Broker) func() int {
	t.Helper()
	before, err := b.DeadLettered(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return func() int {
		n, err := b.DeadLettered(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n - before
	}
}

// LongOutage: a single message in a region whose API stays down until the
// message has failed more than MaxRetries + 1 times (counted, not timed:
// a slow machine only makes the outage longer). It is the probe again and
// again, and fails each time; once the region recovers it is delivered,
// once, and never dead-lettered.
func LongOutage(t *testing.T, b Broker) {
	const region, openTimeout = "long-outage", 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dead := deadDelta(t, b)
	br := newBreaker(t, breaker.Config{Name: "genesys/" + region, FailureThreshold: 1, OpenTimeout: openTimeout, HalfOpenSuccesses: 1})
	gate := newGate(t, queuegate.Config{Breaker: br, Jitter: 20 * time.Millisecond, RetryDelay: 50 * time.Millisecond})
	rec := newRecorder()
	var down sync.Mutex // held while the API is down
	var isDown = true
	handle := func(ctx context.Context, id string) error {
		rec.call(id)
		err := br.Do(ctx, func(context.Context) error {
			down.Lock()
			defer down.Unlock()
			if isDown {
				return errDown
			}
			return nil
		})
		if err == nil {
			rec.success(id)
		}
		return err
	}
	if err := b.Publish(ctx, region, []string{"m-1"}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	start := time.Now()
	c := b.Consume(runCtx, region, gate, handle, Options{})
	for len(rec.times("m-1")) <= MaxRetries+1 {
		if ctx.Err() != nil {
			t.Fatalf("the message was tried %d times in the outage, want more than %d", len(rec.times("m-1")), MaxRetries+1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	outage := time.Since(start)
	down.Lock()
	isDown = false
	down.Unlock()
	rec.await(t, ctx, "m-1")
	stop()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	calls := len(rec.times("m-1"))
	s := gate.Stats()
	t.Logf("LONG-OUTAGE broker=%s outage=%v open_timeout=%v handler_calls=%d deliveries=%d outage_failures=%d retried=%d dead_lettered=%d",
		b.Name, outage.Round(time.Millisecond), openTimeout, calls, c.Deliveries(), s.OutageFailures, s.Retried, dead())
	if n := dead(); n != 0 || s.DeadLettered != 0 || s.Retried != 0 {
		t.Fatalf("%d dead-lettered, gate stats %+v: want none dead-lettered, none charged a retry", n, s)
	}
	if n := rec.successes("m-1"); n != 1 {
		t.Fatalf("delivered %d times, want 1", n)
	}
}

// Drain: a consumer that stops with a message in hand lets its handler
// finish (its context is not cancelled with the consumer's) and acks it;
// the message is not delivered again.
func Drain(t *testing.T, b Broker) {
	const region = "drain"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gate := newGate(t, queuegate.Config{Breaker: newBreaker(t, breaker.Config{Name: region})})
	rec := newRecorder()
	started, release := make(chan struct{}), make(chan struct{})
	var ctxErrAtRelease error
	handle := func(ctx context.Context, id string) error {
		rec.call(id)
		if id == "slow-1" {
			close(started)
			<-release
			ctxErrAtRelease = ctx.Err()
		}
		rec.success(id)
		return nil
	}
	if err := b.Publish(ctx, region, []string{"slow-1"}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	c := b.Consume(runCtx, region, gate, handle, Options{DrainTimeout: 10 * time.Second})
	<-started
	stop() // shutdown, with the call in the middle
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case err := <-waited:
		t.Fatalf("Run returned (%v) with a handler still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if ctxErrAtRelease != nil {
		t.Fatalf("the handler's context ended with the consumer's (%v): the call would be cut and sent again", ctxErrAtRelease)
	}
	// A new consumer gets the next message, and not slow-1 again.
	if err := b.Publish(ctx, region, []string{"marker-1"}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop = context.WithCancel(ctx)
	c = b.Consume(runCtx, region, gate, handle, Options{})
	rec.await(t, ctx, "slow-1")
	rec.await(t, ctx, "marker-1")
	stop()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.times("slow-1")); n != 1 {
		t.Fatalf("slow-1 was handled %d times, want 1: the shutdown sent it twice", n)
	}
}

// CutShort: a handler still running at the drain timeout has its context
// cancelled; its message comes back after the gate's RetryDelay, not at
// once.
func CutShort(t *testing.T, b Broker) {
	const region, retryDelay, drain = "cut-short", 400 * time.Millisecond, 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gate := newGate(t, queuegate.Config{Breaker: newBreaker(t, breaker.Config{Name: region}),
		RetryDelay: retryDelay, Jitter: 20 * time.Millisecond})
	rec := newRecorder()
	started := make(chan struct{}, 2)
	var cutAt time.Time
	var mu sync.Mutex
	handle := func(ctx context.Context, id string) error {
		if rec.call(id) == 1 {
			started <- struct{}{}
			<-ctx.Done() // a call that hangs past the drain timeout
			mu.Lock()
			cutAt = time.Now()
			mu.Unlock()
			return ctx.Err()
		}
		rec.success(id)
		return nil
	}
	if err := b.Publish(ctx, region, []string{"stuck-1"}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	c := b.Consume(runCtx, region, gate, handle, Options{DrainTimeout: drain})
	<-started
	stop()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop = context.WithCancel(ctx)
	c = b.Consume(runCtx, region, gate, handle, Options{})
	rec.await(t, ctx, "stuck-1")
	stop()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	times := rec.times("stuck-1")
	mu.Lock()
	back := times[1].Sub(cutAt)
	mu.Unlock()
	t.Logf("CUT-SHORT broker=%s drain_timeout=%v retry_delay=%v back_after=%v cut_short=%d", b.Name, drain, retryDelay, back.Round(time.Millisecond), gate.Stats().CutShort)
	if len(times) != 2 || back < retryDelay-50*time.Millisecond {
		t.Fatalf("stuck-1 handled %d times, again %v after it was cut short; want twice, the second no sooner than %v", len(times), back, retryDelay)
	}
}

// InHand: a message in hand when its circuit opens (its own call opens it)
// goes back with a delay of the breaker's RetryAfter plus jitter. The
// circuit is then closed at once, so nothing but that delay holds the
// message back: a plain requeue would be redelivered at once.
func InHand(t *testing.T, b Broker) {
	const region, openTimeout, jitter = "in-hand", 400 * time.Millisecond, 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	br := newBreaker(t, breaker.Config{Name: "genesys/" + region, FailureThreshold: 1, OpenTimeout: openTimeout})
	gate := newGate(t, queuegate.Config{Breaker: br, Jitter: jitter})
	rec := newRecorder()
	var failedAt time.Time
	var mu sync.Mutex
	handle := func(ctx context.Context, id string) error {
		if rec.call(id) == 1 {
			err := br.Do(ctx, func(context.Context) error { return errDown }) // opens the circuit
			mu.Lock()
			failedAt = time.Now()
			mu.Unlock()
			return err
		}
		rec.success(id)
		return nil
	}
	if err := b.Publish(ctx, region, []string{"held-1"}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	c := b.Consume(runCtx, region, gate, handle, Options{})
	for gate.Stats().Deferred == 0 {
		if ctx.Err() != nil {
			t.Fatal("the message was never deferred")
		}
		time.Sleep(2 * time.Millisecond)
	}
	br.Reset() // flowing again at once
	rec.await(t, ctx, "held-1")
	stop()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	times := rec.times("held-1")
	mu.Lock()
	back := times[1].Sub(failedAt)
	mu.Unlock()
	t.Logf("IN-HAND broker=%s retry_after=%v jitter=%v back_after=%v", b.Name, openTimeout, jitter, back.Round(time.Millisecond))
	if tolerance := 50 * time.Millisecond; back < openTimeout-tolerance {
		t.Fatalf("held-1 came back %v after the circuit opened on it, want no sooner than its RetryAfter %v (less %v)", back, openTimeout, tolerance)
	}
}

// TwoProbes: with HalfOpenProbes 2, the consumer holds exactly two messages
// at once while the circuit is half-open: it reaches two, never three.
func TwoProbes(t *testing.T, b Broker) {
	const region = "two-probes"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	br := newBreaker(t, breaker.Config{Name: "genesys/" + region, FailureThreshold: 1, OpenTimeout: 150 * time.Millisecond,
		HalfOpenProbes: 2, HalfOpenSuccesses: 2})
	gate := newGate(t, queuegate.Config{Breaker: br})
	br.Do(ctx, func(context.Context) error { return errDown }) // open
	rec := newRecorder()
	var mu sync.Mutex
	cur, peak, probesSeen := 0, 0, 0
	both := make(chan struct{})
	var bothOnce sync.Once
	handle := func(ctx context.Context, id string) error {
		rec.call(id)
		if br.State() == breaker.HalfOpen {
			mu.Lock()
			cur++
			probesSeen++
			peak = max(peak, cur)
			if cur == 2 {
				bothOnce.Do(func() { close(both) })
			}
			mu.Unlock()
			// Hold the probe until the second is in, and a little more,
			// so that a third would show. The bound only ends the wait
			// if the second never comes (then the test fails on the peak);
			// it is far above any delivery delay of a busy machine.
			select {
			case <-both:
			case <-time.After(10 * time.Second):
			}
			time.Sleep(50 * time.Millisecond)
			mu.Lock()
			cur--
			mu.Unlock()
		}
		if err := br.Do(ctx, func(context.Context) error { return nil }); err != nil {
			return err
		}
		rec.success(id)
		return nil
	}
	var ids []string
	for i := range 12 {
		ids = append(ids, fmt.Sprintf("p-%02d", i))
	}
	if err := b.Publish(ctx, region, ids); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	c := b.Consume(runCtx, region, gate, handle, Options{})
	for range ids {
		select {
		case <-rec.ch:
		case <-ctx.Done():
			t.Fatal("not every message was delivered")
		}
	}
	stop()
	if err := c.Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("TWO-PROBES broker=%s max_concurrent_probes=%d probes=%d", b.Name, peak, probesSeen)
	if peak != 2 {
		t.Fatalf("%d messages at once in the handler while half-open, want exactly 2 (HalfOpenProbes)", peak)
	}
	for _, id := range ids {
		if n := rec.successes(id); n != 1 {
			t.Errorf("%s delivered %d times, want 1", id, n)
		}
	}
}

// Scenarios runs the scenarios above against b, as subtests.
func Scenarios(t *testing.T, b Broker) {
	for _, sc := range []struct {
		name string
		fn   func(*testing.T, Broker)
	}{
		{"LongOutage", LongOutage}, {"Drain", Drain}, {"CutShort", CutShort}, {"InHand", InHand}, {"TwoProbes", TwoProbes},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.fn(t, b) })
	}
}
