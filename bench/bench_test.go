package bench

import (
	"context"
	"sync"
	"testing"

	"github.com/breakerbox/breakerbox/breaker"
	eapache "github.com/eapache/go-resiliency/breaker"
	rubyist "github.com/rubyist/circuitbreaker"
	"github.com/sony/gobreaker/v2"
)

// Each Benchmark is one scenario; its sub-benchmarks lib=... are the
// libraries, so that `benchstat -col /lib` puts them side by side. Loops are
// written out per library (no closure or interface between the loop and the
// library's call) so that every library pays only its own cost.

var ctx = context.Background()

// ---- closed, successful call ----

func BenchmarkClosedSuccess(b *testing.B) {
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		cb := NewBaseline(false)
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, OK)
		}
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBClosed()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, OK)
		}
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		cb := GBClosed()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(OKAny)
		}
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		f := FSClosed()
		b.ReportAllocs()
		for b.Loop() {
			_ = f.Exec.Run(OK0)
		}
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		cb := EAClosed()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Run(OK0)
		}
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		cb := RBClosed()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Call(OK0, 0)
		}
	})
}

func BenchmarkClosedSuccessParallel(b *testing.B) {
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		cb := NewBaseline(false)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Do(ctx, OK)
			}
		})
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBClosed()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Do(ctx, OK)
			}
		})
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		cb := GBClosed()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = cb.Execute(OKAny)
			}
		})
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		f := FSClosed()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = f.Exec.Run(OK0)
			}
		})
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		cb := EAClosed()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Run(OK0)
			}
		})
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		cb := RBClosed()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Call(OK0, 0)
			}
		})
	})
}

// BenchmarkClosedSuccessCounting is breakerbox with Config.CountSuccesses:
// one shared atomic add per success (the other libraries always count).
func BenchmarkClosedSuccessCounting(b *testing.B) {
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBCounting()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, OK)
		}
	})
}

func BenchmarkClosedSuccessCountingParallel(b *testing.B) {
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBCounting()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Do(ctx, OK)
			}
		})
	})
}

// ---- a failure counted under a threshold it never reaches ----

func BenchmarkFailureUnderThreshold(b *testing.B) {
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		cb := NewBaseline(false)
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, Fail)
		}
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBNeverTrip()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, Fail)
		}
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		cb := GBNeverTrip()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(FailAny)
		}
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		f := FSNeverTrip()
		b.ReportAllocs()
		for b.Loop() {
			_ = f.Exec.Run(Fail0)
		}
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		cb := EANeverTrip()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Run(Fail0)
		}
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		cb := RBNeverTrip()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Call(Fail0, 0)
		}
	})
}

// ---- an error the breaker is told to ignore (context.Canceled) ----
//
// The breakers have the shared config (5 failures trip), so had the error
// counted, they would have opened (see TestScenariosAgree). go-resiliency
// cannot classify errors and is left out; failsafe-go records the error as a
// success; rubyist ignores a failure when the call's context is canceled.

func BenchmarkIgnoredError(b *testing.B) {
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		cb := NewBaseline(false)
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, Canceled)
		}
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBClosed()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, Canceled)
		}
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		cb := GBClosed()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(CanceledAny)
		}
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		f := FSClosed()
		b.ReportAllocs()
		for b.Loop() {
			_ = f.Exec.Run(Canceled0)
		}
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		cb := RBClosed()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.CallContext(CanceledCtx, Canceled0, 0)
		}
	})
}

// ---- rejection while open (open for 60 s: the whole benchmark) ----

func BenchmarkRejectOpen(b *testing.B) {
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		cb := NewBaseline(true)
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, OK)
		}
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBOpen()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, OK)
		}
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		cb := GBOpen()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(OKAny)
		}
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		f := FSOpen()
		b.ReportAllocs()
		for b.Loop() {
			_ = f.Exec.Run(OK0)
		}
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		cb := EAOpen()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Run(OK0)
		}
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		cb := RBOpen()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Call(OK0, 0)
		}
	})
}

func BenchmarkRejectOpenParallel(b *testing.B) {
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		cb := NewBaseline(true)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Do(ctx, OK)
			}
		})
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBOpen()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Do(ctx, OK)
			}
		})
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		cb := GBOpen()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = cb.Execute(OKAny)
			}
		})
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		f := FSOpen()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = f.Exec.Run(OK0)
			}
		})
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		cb := EAOpen()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Run(OK0)
			}
		})
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		cb := RBOpen()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = cb.Call(OK0, 0)
			}
		})
	})
}

// ---- half-open: one probe admitted, run and released per iteration ----
//
// Each breaker is half-open and configured to stay so (see the HalfOpen
// constructors). rubyist cannot stay half-open and is left out; no baseline.

func BenchmarkHalfOpenProbe(b *testing.B) {
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		cb := BBHalfOpen()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Do(ctx, OK)
		}
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		cb := GBHalfOpen()
		b.ReportAllocs()
		for b.Loop() {
			_, _ = cb.Execute(OKAny)
		}
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		f := FSHalfOpen()
		b.ReportAllocs()
		for b.Loop() {
			_ = f.Exec.Run(OK0)
		}
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		cb := EAHalfOpen()
		b.ReportAllocs()
		for b.Loop() {
			_ = cb.Run(OK0)
		}
	})
}

// ---- keyed lookup of an existing key among 100 ----
//
// breakerbox has Registry and rubyist has Panel. gobreaker, failsafe-go and
// go-resiliency have no registry: their rows are the sync.Map a user would
// write, so they equal the baseline (a bare sync.Map Load) by construction.

var (
	sinkBB *breaker.Breaker
	sinkGB *gobreaker.CircuitBreaker[any]
	sinkFS *FS
	sinkEA *eapache.Breaker
	sinkRB *rubyist.Breaker
	sinkBL *Baseline
)

func BenchmarkRegistryGet(b *testing.B) {
	key := Key
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		m := SyncMapOf(func() *Baseline { return NewBaseline(false) })
		b.ReportAllocs()
		for b.Loop() {
			v, _ := m.Load(key)
			sinkBL = v.(*Baseline)
		}
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		r := BBRegistry()
		defer r.Close()
		b.ReportAllocs()
		for b.Loop() {
			sinkBB, _ = r.Get(key) // no Configure hook: cannot fail
		}
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		m := SyncMapOf(GBClosed)
		b.ReportAllocs()
		for b.Loop() {
			v, _ := m.Load(key)
			sinkGB = v.(*gobreaker.CircuitBreaker[any])
		}
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		m := SyncMapOf(FSClosed)
		b.ReportAllocs()
		for b.Loop() {
			v, _ := m.Load(key)
			sinkFS = v.(*FS)
		}
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		m := SyncMapOf(EAClosed)
		b.ReportAllocs()
		for b.Loop() {
			v, _ := m.Load(key)
			sinkEA = v.(*eapache.Breaker)
		}
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		p := RBPanel()
		b.ReportAllocs()
		for b.Loop() {
			sinkRB, _ = p.Get(key)
		}
	})
}

func BenchmarkRegistryGetParallel(b *testing.B) {
	key := Key
	b.Run("lib="+LibBaseline, func(b *testing.B) {
		m := SyncMapOf(func() *Baseline { return NewBaseline(false) })
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var got *Baseline
			for pb.Next() {
				v, _ := m.Load(key)
				got = v.(*Baseline)
			}
			keep(got)
		})
	})
	b.Run("lib="+LibBreakerbox, func(b *testing.B) {
		r := BBRegistry()
		defer r.Close()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var got *breaker.Breaker
			for pb.Next() {
				got, _ = r.Get(key)
			}
			keep(got)
		})
	})
	b.Run("lib="+LibGobreaker, func(b *testing.B) {
		m := SyncMapOf(GBClosed)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var got *gobreaker.CircuitBreaker[any]
			for pb.Next() {
				v, _ := m.Load(key)
				got = v.(*gobreaker.CircuitBreaker[any])
			}
			keep(got)
		})
	})
	b.Run("lib="+LibFailsafe, func(b *testing.B) {
		m := SyncMapOf(FSClosed)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var got *FS
			for pb.Next() {
				v, _ := m.Load(key)
				got = v.(*FS)
			}
			keep(got)
		})
	})
	b.Run("lib="+LibEapache, func(b *testing.B) {
		m := SyncMapOf(EAClosed)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var got *eapache.Breaker
			for pb.Next() {
				v, _ := m.Load(key)
				got = v.(*eapache.Breaker)
			}
			keep(got)
		})
	})
	b.Run("lib="+LibRubyist, func(b *testing.B) {
		p := RBPanel()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			var got *rubyist.Breaker
			for pb.Next() {
				got, _ = p.Get(key)
			}
			keep(got)
		})
	})
}

var keepMu sync.Mutex
var kept any

// keep stores v once per goroutine so that the lookups are not dead code.
func keep(v any) {
	keepMu.Lock()
	kept = v
	keepMu.Unlock()
}
