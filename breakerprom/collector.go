// Package breakerprom exports the breakers of a breaker.Registry as
// Prometheus metrics.
//
// A Collector reads each breaker's Snapshot when Prometheus scrapes, so it
// adds nothing to the calls themselves: breakers created after it was
// registered appear on the next scrape, removed ones disappear. Its metrics,
// each labelled with the breaker's name as circuit:
//
//	breakerbox_circuit_state{circuit, state}           gauge, 1 for the current state and 0 for
//	                                                   closed, open, half_open, forced_open, disabled
//	breakerbox_calls_total{circuit, outcome}            counter; outcome is success, failure or ignored
//	breakerbox_rejected_total{circuit, reason}          counter; reason is open (OPEN or FORCED_OPEN)
//	                                                   or half_open_full (every probe slot taken)
//	breakerbox_transitions_total{circuit, from, to}     counter
//	breakerbox_open_until_seconds{circuit}              gauge, seconds until a probe is allowed (OPEN, or HALF_OPEN with every probe slot taken; else 0)
//
// outcome="success" is exported only for breakers with
// breaker.Config.CountSuccesses set: without it the breaker does not count
// every success (so a healthy call writes no shared memory), and a series
// that stood still would read as "no traffic". Rate of traffic is then the
// caller's own request metric.
//
// transitions_total always has the four automatic transitions
// (closed→open, open→half_open, half_open→closed, half_open→open), at 0
// until they happen, so that increase() sees the first one; the operator
// transitions (to forced_open, disabled, or closed by a reset) appear once
// they have happened.
package breakerprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/breaker"
)

// Collector is a prometheus.Collector over the breakers of a registry.
type Collector struct {
	registry    *breaker.Registry
	state       *prometheus.Desc
	calls       *prometheus.Desc
	rejected    *prometheus.Desc
	transitions *prometheus.Desc
	openUntil   *prometheus.Desc
}

// NewCollector returns a Collector over registry's breakers. Register it
// with a prometheus.Registerer.
func NewCollector(registry *breaker.Registry) *Collector {
	return &Collector{
		registry: registry,
		state: prometheus.NewDesc("breakerbox_circuit_state",
			"Current state of the circuit breaker: 1 for the state it is in, 0 for the others.",
			[]string{"circuit", "state"}, nil),
		calls: prometheus.NewDesc("breakerbox_calls_total",
			"Calls let through by the circuit breaker, by outcome (success only when the breaker counts successes).",
			[]string{"circuit", "outcome"}, nil),
		rejected: prometheus.NewDesc("breakerbox_rejected_total",
			"Calls rejected by the circuit breaker without running, by reason.",
			[]string{"circuit", "reason"}, nil),
		transitions: prometheus.NewDesc("breakerbox_transitions_total",
			"State transitions of the circuit breaker.",
			[]string{"circuit", "from", "to"}, nil),
		openUntil: prometheus.NewDesc("breakerbox_open_until_seconds",
			"Seconds until the circuit breaker allows a probe: the rest of the open timeout, or while every half-open probe slot is taken the time until one frees; else 0.",
			[]string{"circuit"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.calls
	ch <- c.rejected
	ch <- c.transitions
	ch <- c.openUntil
}

var states = breaker.States()

// automatic are the transitions the breaker makes by itself; they are
// exported from the start, the others once they happened.
var automatic = [...][2]breaker.State{
	{breaker.Closed, breaker.Open},
	{breaker.Open, breaker.HalfOpen},
	{breaker.HalfOpen, breaker.Closed},
	{breaker.HalfOpen, breaker.Open},
}

// Collect implements prometheus.Collector. It reads one Snapshot per breaker.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.registry.All() {
		c.collect(ch, b.Snapshot())
	}
}

func (c *Collector) collect(ch chan<- prometheus.Metric, s breaker.Snapshot) {
	name := s.Name
	for _, st := range states {
		v := 0.0
		if s.State == st {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, name, st.String())
	}

	if s.SuccessesCounted {
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(s.Successes), name, "success")
	}
	ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(s.Failures), name, "failure")
	ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(s.Ignored), name, "ignored")

	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(s.Rejected), name, "open")
	ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(s.RejectedHalfOpen), name, "half_open_full")

	for _, from := range states {
		for _, to := range states {
			n := s.TransitionCount(from, to)
			if from == to || n == 0 && !isAutomatic(from, to) {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.transitions, prometheus.CounterValue, float64(n), name, from.String(), to.String())
		}
	}

	ch <- prometheus.MustNewConstMetric(c.openUntil, prometheus.GaugeValue, s.RetryAfter.Seconds(), name)
}

func isAutomatic(from, to breaker.State) bool {
	for _, t := range automatic {
		if t == [2]breaker.State{from, to} {
			return true
		}
	}
	return false
}
