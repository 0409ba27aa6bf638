// Package bench compares package breaker with other Go circuit breakers on
// the same scenarios. It is a separate module so that the main module stays
// standard-library-only; run it with ./run.sh (see RESULTS.md).
//
// Every library is configured alike: 5 consecutive failures trip the
// breaker, it stays open 60 s, and context.Canceled is ignored (neither a
// success nor a failure) where the library can express that. This file holds
// the constructors, one per library and scenario; bench_test.go measures them
// and scenarios_test.go checks that each one is in the state its benchmark
// claims (the open breaker rejects, the failure benchmark never trips, ...).
//
// Libraries left out: github.com/afex/hystrix-go runs every call in a new
// goroutine and synchronises on channels (hystrix.Do), so it cannot be made
// comparable on a per-call benchmark; github.com/mercari/go-circuitbreaker is
// not served by the Go module proxy (403), so it cannot be built here.
package bench

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/cenk/backoff"
	eapache "github.com/eapache/go-resiliency/breaker"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	rubyist "github.com/rubyist/circuitbreaker"
	"github.com/sony/gobreaker/v2"
)

// The configuration shared by every library.
const (
	TripAfter   = 5                // consecutive failures that open a breaker
	OpenTimeout = 60 * time.Second // how long it stays open
	// NeverTrip is the threshold of the "failure under the threshold"
	// scenario: large enough that no benchmark reaches it.
	NeverTrip = 1 << 30
	// shortOpen is the open timeout of the half-open scenario: the breaker
	// trips, half-opens after shortOpen, then stays half-open.
	shortOpen = time.Millisecond
)

// Libraries, in the order of the benchmark table.
const (
	LibBaseline   = "baseline"
	LibBreakerbox = "breakerbox"
	LibGobreaker  = "gobreaker"
	LibFailsafe   = "failsafe"
	LibEapache    = "eapache"
	LibRubyist    = "rubyist"
)

// ErrBoom is the failure every failing call returns.
var ErrBoom = errors.New("boom")

// The protected functions, one per calling convention. They are package
// level functions so that no benchmark allocates a closure per call.

// OK succeeds.
func OK(context.Context) error { return nil }

// Fail fails.
func Fail(context.Context) error { return ErrBoom }

// Canceled returns context.Canceled, the error every library is told to ignore.
func Canceled(context.Context) error { return context.Canceled }

// OK0, Fail0, Canceled0: the same without a context (failsafe, eapache, rubyist).
func OK0() error       { return nil }
func Fail0() error     { return ErrBoom }
func Canceled0() error { return context.Canceled }

// OKAny, FailAny, CanceledAny: the same returning a value (gobreaker).
func OKAny() (any, error)       { return nil, nil }
func FailAny() (any, error)     { return nil, ErrBoom }
func CanceledAny() (any, error) { return nil, context.Canceled }

func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }

// ---- baseline ----

// Baseline is the floor any breaker pays: one atomic load, then the call.
type Baseline struct{ open atomic.Uint32 }

// ErrBaselineOpen is the baseline's rejection.
var ErrBaselineOpen = errors.New("baseline: open")

// Do is not inlined, like a breaker's Do.
//
//go:noinline
func (b *Baseline) Do(ctx context.Context, fn func(context.Context) error) error {
	if b.open.Load() != 0 {
		return ErrBaselineOpen
	}
	return fn(ctx)
}

// NewBaseline returns a closed baseline, or an open one: it rejects.
func NewBaseline(open bool) *Baseline {
	b := new(Baseline)
	if open {
		b.open.Store(1)
	}
	return b
}

// ---- breakerbox ----

var quiet = slog.New(slog.DiscardHandler)

// BBConfig is the shared configuration for breakerbox (its defaults, spelt out).
func BBConfig() breaker.Config {
	return breaker.Config{
		Name:              "bench",
		FailureThreshold:  TripAfter,
		OpenTimeout:       OpenTimeout,
		HalfOpenSuccesses: 2,
		HalfOpenProbes:    1,
		Logger:            quiet,
	}
}

func newBB(c breaker.Config) *breaker.Breaker {
	b, err := breaker.New(c)
	if err != nil {
		panic(err)
	}
	return b
}

// BBClosed returns a closed breakerbox breaker with the shared config.
func BBClosed() *breaker.Breaker { return newBB(BBConfig()) }

// BBCounting is BBClosed with Config.CountSuccesses: one atomic add per success.
func BBCounting() *breaker.Breaker {
	c := BBConfig()
	c.CountSuccesses = true
	return newBB(c)
}

// BBNeverTrip returns a closed breaker whose threshold no benchmark reaches.
func BBNeverTrip() *breaker.Breaker {
	c := BBConfig()
	c.FailureThreshold = NeverTrip
	return newBB(c)
}

// BBOpen returns a breaker tripped by TripAfter failures: open for 60 s.
func BBOpen() *breaker.Breaker {
	b := BBClosed()
	for range TripAfter {
		_ = b.Do(context.Background(), Fail)
	}
	return b
}

// BBHalfOpen returns a breaker that is HALF_OPEN and stays so: one probe at
// a time, each released on success, and 1<<30 successes needed to close.
func BBHalfOpen() *breaker.Breaker {
	c := BBConfig()
	c.OpenTimeout = shortOpen
	c.ProbeTimeout = OpenTimeout
	c.HalfOpenSuccesses = NeverTrip
	b := newBB(c)
	for range TripAfter {
		_ = b.Do(context.Background(), Fail)
	}
	waitFor("breakerbox half-open", func() bool { return b.State() == breaker.HalfOpen })
	return b
}

// ---- sony/gobreaker/v2 ----

// GBSettings is the shared configuration for gobreaker.
func GBSettings() gobreaker.Settings {
	return gobreaker.Settings{
		Name:        "bench",
		MaxRequests: 2, // consecutive successes in half-open that close it
		Timeout:     OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= TripAfter },
		IsExcluded:  isCanceled,
	}
}

// GBClosed returns a closed gobreaker.
func GBClosed() *gobreaker.CircuitBreaker[any] {
	return gobreaker.NewCircuitBreaker[any](GBSettings())
}

// GBNeverTrip returns a closed gobreaker whose threshold no benchmark reaches.
func GBNeverTrip() *gobreaker.CircuitBreaker[any] {
	s := GBSettings()
	s.ReadyToTrip = func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= NeverTrip }
	return gobreaker.NewCircuitBreaker[any](s)
}

// GBOpen returns a tripped gobreaker, open for 60 s.
func GBOpen() *gobreaker.CircuitBreaker[any] {
	cb := GBClosed()
	for range TripAfter {
		_, _ = cb.Execute(FailAny)
	}
	return cb
}

// GBHalfOpen returns a half-open gobreaker that stays half-open. gobreaker
// bounds the requests of a half-open episode in total (MaxRequests), not in
// flight, and closes after MaxRequests consecutive successes: MaxRequests is
// set to 1<<31 so neither happens during a benchmark.
func GBHalfOpen() *gobreaker.CircuitBreaker[any] {
	s := GBSettings()
	s.Timeout = shortOpen
	s.MaxRequests = 1 << 31
	cb := gobreaker.NewCircuitBreaker[any](s)
	for range TripAfter {
		_, _ = cb.Execute(FailAny)
	}
	waitFor("gobreaker half-open", func() bool { return cb.State() == gobreaker.StateHalfOpen })
	return cb
}

// ---- failsafe-go ----

// FS is a failsafe-go circuit breaker and the executor built once around it.
type FS struct {
	CB   circuitbreaker.CircuitBreaker[any]
	Exec failsafe.Executor[any]
}

// fsBuilder is the shared configuration: 5 failures out of the last 5 calls
// (that is, 5 consecutive), 60 s open, 2 successes to close, and
// context.Canceled not handled as a failure. failsafe-go has no "ignored"
// outcome: an error its HandleIf rejects is recorded as a success.
func fsBuilder() circuitbreaker.Builder[any] {
	return circuitbreaker.NewBuilder[any]().
		HandleIf(func(_ any, err error) bool { return err != nil && !isCanceled(err) }).
		WithFailureThreshold(TripAfter).
		WithDelay(OpenTimeout).
		WithSuccessThreshold(2)
}

func newFS(b circuitbreaker.Builder[any]) *FS {
	cb := b.Build()
	return &FS{CB: cb, Exec: failsafe.With[any](cb)}
}

// FSClosed returns a closed failsafe-go breaker.
func FSClosed() *FS { return newFS(fsBuilder()) }

// FSNeverTrip returns a closed breaker that never trips. A count-based
// failsafe-go breaker keeps a bit per call of its window, so a threshold of
// 1<<30 would cost 128 MiB; instead the window stays 5 calls, as in the
// shared config, and the threshold is 6: it can never be reached.
func FSNeverTrip() *FS {
	return newFS(fsBuilder().WithFailureThresholdRatio(TripAfter+1, TripAfter))
}

// FSOpen returns a tripped failsafe-go breaker, open for 60 s.
func FSOpen() *FS {
	f := FSClosed()
	for range TripAfter {
		_ = f.Exec.Run(Fail0)
	}
	return f
}

// FSHalfOpen returns a half-open failsafe-go breaker that stays half-open:
// one permit at a time (capacity 1) and a success threshold of 2, which a
// window of 1 call can never reach.
func FSHalfOpen() *FS {
	f := newFS(fsBuilder().WithDelay(shortOpen).WithSuccessThresholdRatio(2, 1))
	for range TripAfter {
		_ = f.Exec.Run(Fail0)
	}
	// failsafe-go half-opens lazily, on the first permit request after the
	// delay: make that request with a successful probe.
	waitFor("failsafe half-open", func() bool { return f.Exec.Run(OK0) == nil })
	return f
}

// ---- eapache/go-resiliency ----

// EAClosed returns a closed go-resiliency breaker: 5 errors (without an
// error-free minute between them), 2 successes to close, 60 s open. It has
// no error classification, so the ignored-error scenario is left out.
func EAClosed() *eapache.Breaker { return eapache.New(TripAfter, 2, OpenTimeout) }

// EANeverTrip returns a closed breaker whose threshold no benchmark reaches.
func EANeverTrip() *eapache.Breaker { return eapache.New(NeverTrip, 2, OpenTimeout) }

// EAOpen returns a tripped breaker, open for 60 s (a goroutine sleeps 60 s
// then half-opens it).
func EAOpen() *eapache.Breaker {
	b := EAClosed()
	for range TripAfter {
		_ = b.Run(Fail0)
	}
	return b
}

// EAHalfOpen returns a half-open breaker that stays half-open (1<<30
// successes to close). go-resiliency does not limit the probes in flight.
func EAHalfOpen() *eapache.Breaker {
	b := eapache.New(TripAfter, NeverTrip, shortOpen)
	for range TripAfter {
		_ = b.Run(Fail0)
	}
	waitFor("eapache half-open", func() bool { return b.GetState() == eapache.HalfOpen })
	return b
}

// ---- rubyist/circuitbreaker ----

// rbNew returns a rubyist breaker tripping after threshold consecutive
// failures, open for a constant 60 s. rubyist ignores a failure when the
// call's context is canceled (CallContext), not by error.
func rbNew(threshold int64) *rubyist.Breaker {
	return rubyist.NewBreakerWithOptions(&rubyist.Options{
		BackOff:    backoff.NewConstantBackOff(OpenTimeout),
		ShouldTrip: rubyist.ConsecutiveTripFunc(threshold),
	})
}

// RBClosed returns a closed rubyist breaker.
func RBClosed() *rubyist.Breaker { return rbNew(TripAfter) }

// RBNeverTrip returns a closed breaker whose threshold no benchmark reaches.
func RBNeverTrip() *rubyist.Breaker { return rbNew(NeverTrip) }

// RBOpen returns a tripped rubyist breaker, open for 60 s.
func RBOpen() *rubyist.Breaker {
	b := RBClosed()
	for range TripAfter {
		_ = b.Call(Fail0, 0)
	}
	return b
}

// rubyist's half-open lets one trial call through per backoff period and a
// success closes the breaker (Reset): it cannot stay half-open, so the
// half-open scenario is left out.

// CanceledCtx is a context that is already canceled (rubyist's ignore rule).
var CanceledCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// ---- keyed lookup ----

// Keys is the number of keys in each registry; Key is the one looked up.
const (
	Keys = 100
	Key  = "svc-42"
)

// KeyName returns the i-th key.
func KeyName(i int) string { return "svc-" + strconv.Itoa(i) }

// BBRegistry returns a breakerbox Registry holding Keys breakers.
func BBRegistry() *breaker.Registry {
	r, err := breaker.NewRegistry(breaker.RegistryConfig{Default: BBConfig()})
	if err != nil {
		panic(err)
	}
	for i := range Keys {
		if _, err := r.Get(KeyName(i)); err != nil {
			panic(err)
		}
	}
	return r
}

// SyncMapOf returns a sync.Map of Keys values made by mk: the registry a
// user of a library without one would write.
func SyncMapOf[T any](mk func() T) *sync.Map {
	m := new(sync.Map)
	for i := range Keys {
		m.Store(KeyName(i), mk())
	}
	return m
}

// RBPanel returns a rubyist Panel (its registry) holding Keys breakers.
func RBPanel() *rubyist.Panel {
	p := rubyist.NewPanel()
	for i := range Keys {
		p.Add(KeyName(i), RBClosed())
	}
	return p
}

func waitFor(what string, cond func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			panic("bench: timed out waiting for " + what)
		}
		time.Sleep(shortOpen)
	}
}
