package breakerprom

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/breaker"
)

// Durations is an opt-in histogram of the time calls take through their
// breakers, by outcome, as resilience4j's resilience4j_circuitbreaker_calls_seconds:
//
//	breakerbox_calls_seconds{circuit, outcome}   histogram; outcome is success, failure or ignored
//
// A latency a service slows to, or the timeouts its failures are, show here
// long before the circuit opens. Rejected calls are not timed: they did not
// run. It is opt-in because it costs the caller a clock read on each side
// of the call and a histogram observation; the Collector's counters cost
// nothing. Register it beside the Collector.
type Durations struct {
	vec *prometheus.HistogramVec
}

// DefaultDurationBuckets are the buckets of Durations when NewDurations is
// given none: from 1 ms to 30 s, for calls to remote services.
var DefaultDurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewDurations returns a Durations with the given bucket upper bounds in
// seconds; nil means DefaultDurationBuckets.
func NewDurations(buckets []float64) *Durations {
	if buckets == nil {
		buckets = DefaultDurationBuckets
	}
	return &Durations{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "breakerbox_calls_seconds",
		Help:    "Duration of the calls let through by the circuit breaker, by outcome.",
		Buckets: buckets,
	}, []string{"circuit", "outcome"})}
}

// Observe records a call of circuit that took d and ended with outcome o.
// For callers that report outcomes themselves (Breaker.Allow and
// Ticket.Report).
func (d *Durations) Observe(circuit string, o breaker.Outcome, took time.Duration) {
	d.vec.WithLabelValues(circuit, o.String()).Observe(took.Seconds())
}

// Do is b.Do(ctx, fn) with the call timed: the outcome is the breaker's
// classification of fn's error (Config.Classify). A rejected call is not
// observed.
func (d *Durations) Do(ctx context.Context, b *breaker.Breaker, fn func(context.Context) error) error {
	ran := false
	var start time.Time
	var err error
	outer := b.Do(ctx, func(ctx context.Context) error {
		ran, start = true, time.Now()
		err = fn(ctx)
		return err
	})
	if ran {
		took := time.Since(start)
		cfg := b.Config()
		o := breaker.Success
		if err != nil {
			o = cfg.Classify(err)
		}
		d.Observe(cfg.Name, o, took)
	}
	return outer
}

// Forget removes circuit's series, for a breaker removed from its registry.
func (d *Durations) Forget(circuit string) {
	d.vec.DeletePartialMatch(prometheus.Labels{"circuit": circuit})
}

// Describe implements prometheus.Collector.
func (d *Durations) Describe(ch chan<- *prometheus.Desc) { d.vec.Describe(ch) }

// Collect implements prometheus.Collector.
func (d *Durations) Collect(ch chan<- prometheus.Metric) { d.vec.Collect(ch) }
