package breakerprom_test

import (
	"context"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerprom"
)

// BenchmarkClosedSuccess measures a successful call through a CLOSED breaker
// without the collector, and with it registered and scraped from another
// goroutine every millisecond or without pause (thousands of times more often
// than any Prometheus would). The collector reads snapshots and takes no lock
// the closed path takes, so what the calls lose is only the CPU the scraper
// uses, reported as %scraping.
func BenchmarkClosedSuccess(b *testing.B) {
	ok := func(context.Context) error { return nil }
	ctx := context.Background()
	newFleet := func(b *testing.B) (*breaker.Registry, *breaker.Breaker) {
		reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discardLogger}})
		if err != nil {
			b.Fatal(err)
		}
		for i := range 20 { // a scrape covers a realistic number of circuits
			get(b, reg, "svc-"+strconv.Itoa(i))
		}
		return reg, get(b, reg, "svc-0")
	}

	b.Run("without-collector", func(b *testing.B) {
		_, br := newFleet(b)
		b.ReportAllocs()
		for b.Loop() {
			br.Do(ctx, ok)
		}
	})
	// Scrape every interval (0: without pause) from another goroutine. The
	// scraper's own allocations show up in B/op, since Go counts allocations
	// process-wide. The control has the same goroutine wake up as often but
	// not scrape: on a small machine the wake-ups alone cost the loop a
	// couple of ns, and that is not the collector's doing.
	scraped := func(interval time.Duration, scrape bool) func(b *testing.B) {
		return func(b *testing.B) {
			reg, br := newFleet(b)
			promReg := prometheus.NewRegistry()
			promReg.MustRegister(breakerprom.NewCollector(reg))

			stop := make(chan struct{})
			var wg sync.WaitGroup
			var scrapes, scrapeNanos atomic.Int64
			wg.Add(1)
			go func() {
				defer wg.Done()
				for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); { // bounded
					if interval > 0 {
						time.Sleep(interval)
					}
					select {
					case <-stop:
						return
					default:
					}
					if !scrape {
						continue
					}
					start := time.Now()
					if _, err := promReg.Gather(); err != nil {
						b.Error(err)
						return
					}
					scrapeNanos.Add(int64(time.Since(start)))
					scrapes.Add(1)
				}
			}()
			b.ReportAllocs()
			for b.Loop() {
				br.Do(ctx, ok)
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(scrapes.Load()), "scrapes")
			// The share of the run the scraper was busy: CPU it took from a
			// 2-core machine, which is what the calls lose, not a lock.
			b.ReportMetric(100*float64(scrapeNanos.Load())/float64(b.Elapsed()), "%scraping")
		}
	}
	b.Run("control-goroutine-waking-every-1ms", scraped(time.Millisecond, false))
	b.Run("collector-scraped-every-1ms", scraped(time.Millisecond, true))
	b.Run("collector-scraped-nonstop", scraped(0, true))
}

// BenchmarkScrape10kCircuits is one scrape of 10,000 breakers: through a
// prometheus.Registry (Collect, then client_golang's Gather and text
// encoder), and written directly (WriteText, what Handler serves). The
// sidecar's figure, with its other metrics, is BenchmarkMetricsScrape in
// cmd/breakerbox/internal/proxy.
func BenchmarkScrape10kCircuits(b *testing.B) {
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: discardLogger, CountSuccesses: true}})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10000 {
		get(b, reg, "svc"+strconv.Itoa(i))
	}
	c := breakerprom.NewCollector(reg)
	b.Run("registry-gather-encode", func(b *testing.B) {
		promReg := prometheus.NewRegistry()
		promReg.MustRegister(c)
		b.ReportAllocs()
		for b.Loop() {
			mfs, err := promReg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
			for _, mf := range mfs {
				enc.Encode(mf)
			}
		}
	})
	b.Run("write-text", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.WriteText(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
	})
}
