package bench

import (
	"context"
	"errors"
	"testing"

	"github.com/breakerbox/breakerbox/breaker"
	eapache "github.com/eapache/go-resiliency/breaker"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	rubyist "github.com/rubyist/circuitbreaker"
	"github.com/sony/gobreaker/v2"
)

// TestScenariosAgree checks that every constructor the benchmarks use puts
// its library in the state the benchmark claims, so that no benchmark
// measures something else: the shared config trips after exactly 5
// failures, the failure benchmark never trips, the ignored error is not
// counted, the open breaker rejects without running the function, the
// half-open breaker admits probes and stays half-open, and a keyed lookup
// finds the existing breaker.

type kind int

const (
	ok kind = iota
	fail
	canceled
)

func result(k kind) error {
	switch k {
	case fail:
		return ErrBoom
	case canceled:
		return context.Canceled
	}
	return nil
}

// subject is one breaker seen through a common interface (tests only: the
// benchmarks call each library directly).
type subject struct {
	call   func(k kind) (ran bool, err error)
	state  func() string // "closed", "open" or "half_open"
	isOpen func(err error) bool
}

type lib struct {
	name                              string
	closed, neverTrip, open, halfOpen func() subject // nil: scenario not expressible
	ignores                           bool           // has the ignored-error scenario
}

func bbSubject(b *breaker.Breaker) subject {
	return subject{
		call: func(k kind) (ran bool, err error) {
			err = b.Do(ctx, func(context.Context) error { ran = true; return result(k) })
			return ran, err
		},
		state:  func() string { return b.State().String() },
		isOpen: func(err error) bool { return errors.Is(err, breaker.ErrOpen) },
	}
}

func gbSubject(cb *gobreaker.CircuitBreaker[any]) subject {
	return subject{
		call: func(k kind) (ran bool, err error) {
			_, err = cb.Execute(func() (any, error) { ran = true; return nil, result(k) })
			return ran, err
		},
		state: func() string {
			return map[gobreaker.State]string{gobreaker.StateClosed: "closed", gobreaker.StateOpen: "open",
				gobreaker.StateHalfOpen: "half_open"}[cb.State()]
		},
		isOpen: func(err error) bool {
			return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
		},
	}
}

func fsSubject(f *FS) subject {
	return subject{
		call: func(k kind) (ran bool, err error) {
			err = f.Exec.Run(func() error { ran = true; return result(k) })
			return ran, err
		},
		state: func() string {
			return map[circuitbreaker.State]string{circuitbreaker.ClosedState: "closed", circuitbreaker.OpenState: "open",
				circuitbreaker.HalfOpenState: "half_open"}[f.CB.State()]
		},
		isOpen: func(err error) bool { return errors.Is(err, circuitbreaker.ErrOpen) },
	}
}

func eaSubject(b *eapache.Breaker) subject {
	return subject{
		call: func(k kind) (ran bool, err error) {
			err = b.Run(func() error { ran = true; return result(k) })
			return ran, err
		},
		state: func() string {
			return map[eapache.State]string{eapache.Closed: "closed", eapache.Open: "open",
				eapache.HalfOpen: "half_open"}[b.GetState()]
		},
		isOpen: func(err error) bool { return errors.Is(err, eapache.ErrBreakerOpen) },
	}
}

func rbSubject(b *rubyist.Breaker) subject {
	return subject{
		call: func(k kind) (ran bool, err error) {
			c := ctx
			if k == canceled {
				c = CanceledCtx // rubyist ignores a failure whose context is canceled
			}
			err = b.CallContext(c, func() error { ran = true; return result(k) }, 0)
			return ran, err
		},
		state: func() string {
			if b.Tripped() {
				return "open"
			}
			return "closed"
		},
		isOpen: func(err error) bool { return errors.Is(err, rubyist.ErrBreakerOpen) },
	}
}

func baselineSubject(b *Baseline) subject {
	return subject{
		call: func(k kind) (ran bool, err error) {
			err = b.Do(ctx, func(context.Context) error { ran = true; return result(k) })
			return ran, err
		},
		state: func() string {
			if b.open.Load() != 0 {
				return "open"
			}
			return "closed"
		},
		isOpen: func(err error) bool { return err == ErrBaselineOpen },
	}
}

var libs = []lib{
	{name: LibBreakerbox, ignores: true,
		closed:    func() subject { return bbSubject(BBClosed()) },
		neverTrip: func() subject { return bbSubject(BBNeverTrip()) },
		open:      func() subject { return bbSubject(BBOpen()) },
		halfOpen:  func() subject { return bbSubject(BBHalfOpen()) }},
	{name: LibGobreaker, ignores: true,
		closed:    func() subject { return gbSubject(GBClosed()) },
		neverTrip: func() subject { return gbSubject(GBNeverTrip()) },
		open:      func() subject { return gbSubject(GBOpen()) },
		halfOpen:  func() subject { return gbSubject(GBHalfOpen()) }},
	{name: LibFailsafe, ignores: true,
		closed:    func() subject { return fsSubject(FSClosed()) },
		neverTrip: func() subject { return fsSubject(FSNeverTrip()) },
		open:      func() subject { return fsSubject(FSOpen()) },
		halfOpen:  func() subject { return fsSubject(FSHalfOpen()) }},
	{name: LibEapache,
		closed:    func() subject { return eaSubject(EAClosed()) },
		neverTrip: func() subject { return eaSubject(EANeverTrip()) },
		open:      func() subject { return eaSubject(EAOpen()) },
		halfOpen:  func() subject { return eaSubject(EAHalfOpen()) }},
	{name: LibRubyist, ignores: true,
		closed:    func() subject { return rbSubject(RBClosed()) },
		neverTrip: func() subject { return rbSubject(RBNeverTrip()) },
		open:      func() subject { return rbSubject(RBOpen()) }},
}

const calls = 1000

func TestScenariosAgree(t *testing.T) {
	for _, l := range libs {
		t.Run(l.name, func(t *testing.T) {
			t.Run("TripsAfter5", func(t *testing.T) {
				s := l.closed()
				for i := 1; i <= TripAfter; i++ {
					ran, err := s.call(fail)
					if !ran || err != ErrBoom {
						t.Fatalf("failure %d: ran=%v err=%v", i, ran, err)
					}
					want := "closed"
					if i == TripAfter {
						want = "open"
					}
					if got := s.state(); got != want {
						t.Fatalf("after %d failures: state %s, want %s", i, got, want)
					}
				}
				if ran, err := s.call(ok); ran || !s.isOpen(err) {
					t.Fatalf("after tripping: ran=%v err=%v, want a rejection", ran, err)
				}
			})
			t.Run("ClosedSuccess", func(t *testing.T) {
				s := l.closed()
				expect(t, s, ok, true, func(err error) bool { return err == nil }, "closed")
			})
			t.Run("FailureUnderThreshold", func(t *testing.T) {
				s := l.neverTrip()
				expect(t, s, fail, true, func(err error) bool { return err == ErrBoom }, "closed")
			})
			t.Run("IgnoredError", func(t *testing.T) {
				if !l.ignores {
					t.Skip("cannot classify errors")
				}
				// The shared config: had the error counted, the breaker would open.
				s := l.closed()
				expect(t, s, canceled, true, func(err error) bool { return err == context.Canceled }, "closed")
			})
			t.Run("RejectOpen", func(t *testing.T) {
				s := l.open()
				expect(t, s, ok, false, s.isOpen, "open")
			})
			t.Run("HalfOpenProbe", func(t *testing.T) {
				if l.halfOpen == nil {
					t.Skip("cannot stay half-open")
				}
				s := l.halfOpen()
				expect(t, s, ok, true, func(err error) bool { return err == nil }, "half_open")
			})
		})
	}
	t.Run(LibBaseline, func(t *testing.T) {
		expect(t, baselineSubject(NewBaseline(false)), ok, true, func(err error) bool { return err == nil }, "closed")
		expect(t, baselineSubject(NewBaseline(false)), fail, true, func(err error) bool { return err == ErrBoom }, "closed")
		s := baselineSubject(NewBaseline(true))
		expect(t, s, ok, false, s.isOpen, "open")
	})
}

// expect makes calls calls of kind k and checks each one ran (or not) and
// returned an error accepted by errOK, and that the state was want before
// and after.
func expect(t *testing.T, s subject, k kind, wantRan bool, errOK func(error) bool, want string) {
	t.Helper()
	if got := s.state(); got != want {
		t.Fatalf("before: state %s, want %s", got, want)
	}
	for i := range calls {
		ran, err := s.call(k)
		if ran != wantRan || !errOK(err) {
			t.Fatalf("call %d: ran=%v err=%v (want ran=%v)", i, ran, err, wantRan)
		}
	}
	if got := s.state(); got != want {
		t.Fatalf("after %d calls: state %s, want %s", calls, got, want)
	}
}

// TestScenarioDetails checks what the common interface cannot see.
func TestScenarioDetails(t *testing.T) {
	t.Run("breakerbox counts the failures and the ignored errors", func(t *testing.T) {
		b := BBNeverTrip()
		for range calls {
			_ = b.Do(ctx, Fail)
		}
		if s := b.Snapshot(); s.Failures != calls || s.ConsecutiveFailures != calls || s.State != breaker.Closed {
			t.Fatalf("after %d failures: %+v", calls, s)
		}
		b = BBClosed()
		for range calls {
			_ = b.Do(ctx, Canceled)
		}
		if s := b.Snapshot(); s.Ignored != calls || s.Failures != 0 {
			t.Fatalf("after %d ignored: Ignored=%d Failures=%d", calls, s.Ignored, s.Failures)
		}
	})
	t.Run("breakerbox rejections are counted", func(t *testing.T) {
		b := BBOpen()
		for range calls {
			_ = b.Do(ctx, OK)
		}
		if s := b.Snapshot(); s.Rejected != calls {
			t.Fatalf("Rejected = %d, want %d", s.Rejected, calls)
		}
	})
	t.Run("breakerbox admits one probe at a time", func(t *testing.T) {
		b := BBHalfOpen()
		tk, err := b.Allow()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Allow(); !errors.Is(err, breaker.ErrOpen) {
			t.Fatalf("second probe while the first is in flight: err=%v, want a rejection", err)
		}
		tk.Done(nil)
		tk, err = b.Allow()
		if err != nil {
			t.Fatalf("probe after the first was released: %v", err)
		}
		tk.Done(nil)
		if s := b.Snapshot(); s.State != breaker.HalfOpen || s.ConsecutiveSuccesses != 2 {
			t.Fatalf("state %v, %d successful probes; want half_open, 2", s.State, s.ConsecutiveSuccesses)
		}
	})
	t.Run("gobreaker counts the failures and excludes the ignored errors", func(t *testing.T) {
		cb := GBNeverTrip()
		for range calls {
			_, _ = cb.Execute(FailAny)
		}
		if c := cb.Counts(); c.ConsecutiveFailures != calls {
			t.Fatalf("ConsecutiveFailures = %d, want %d", c.ConsecutiveFailures, calls)
		}
		cb = GBClosed()
		for range calls {
			_, _ = cb.Execute(CanceledAny)
		}
		if c := cb.Counts(); c.TotalFailures != 0 || c.TotalSuccesses != 0 {
			t.Fatalf("after %d excluded: %+v", calls, c)
		}
	})
	t.Run("failsafe admits one probe at a time", func(t *testing.T) {
		f := FSHalfOpen()
		if !f.CB.TryAcquirePermit() {
			t.Fatal("first permit refused")
		}
		if f.CB.TryAcquirePermit() {
			t.Fatal("second permit granted while the first is held")
		}
		f.CB.RecordSuccess()
		if !f.CB.IsHalfOpen() {
			t.Fatalf("state %v after a successful probe, want half-open", f.CB.State())
		}
	})
	t.Run("failsafe counts the failures", func(t *testing.T) {
		f := FSNeverTrip()
		for range calls {
			_ = f.Exec.Run(Fail0)
		}
		if n := f.CB.Metrics().Failures(); n != TripAfter { // the window holds 5 calls
			t.Fatalf("Failures = %d, want %d", n, TripAfter)
		}
	})
	t.Run("rubyist counts the failures, not the canceled ones", func(t *testing.T) {
		b := RBNeverTrip()
		for range calls {
			_ = b.Call(Fail0, 0)
		}
		if n := b.ConsecFailures(); n != calls {
			t.Fatalf("ConsecFailures = %d, want %d", n, calls)
		}
		b = RBClosed()
		for range calls {
			_ = b.CallContext(CanceledCtx, Canceled0, 0)
		}
		if n := b.Failures(); n != 0 {
			t.Fatalf("Failures = %d after canceled calls, want 0", n)
		}
	})
	t.Run("lookups find the existing breaker", func(t *testing.T) {
		r := BBRegistry()
		defer r.Close()
		b1, err1 := r.Get(Key)
		b2, err2 := r.Get(Key)
		if err1 != nil || err2 != nil || b1 != b2 || b1.Name() != Key || len(r.All()) != Keys {
			t.Fatal("breakerbox Registry.Get did not return the existing breaker")
		}
		if n := testing.AllocsPerRun(100, func() { r.Get(Key) }); n != 0 {
			t.Fatalf("Registry.Get of an existing key: %v allocs", n)
		}
		p := RBPanel()
		rb1, ok1 := p.Get(Key)
		rb2, ok2 := p.Get(Key)
		if !ok1 || !ok2 || rb1 != rb2 {
			t.Fatal("rubyist Panel.Get did not return the existing breaker")
		}
		m := SyncMapOf(GBClosed)
		if v, ok := m.Load(Key); !ok || v.(*gobreaker.CircuitBreaker[any]) == nil {
			t.Fatal("sync.Map lookup failed")
		}
	})
}
