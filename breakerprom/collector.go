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
//	breakerbox_circuit_consecutive_failures{circuit}    gauge, the failure streak in CLOSED (consecutive-failure policy)
//	breakerbox_circuit_failure_threshold{circuit}       gauge, the streak that opens the circuit (consecutive-failure policy)
//	breakerbox_circuit_failure_rate{circuit}            gauge, failures / calls in the window (failure-rate policy)
//	breakerbox_circuit_failure_rate_threshold{circuit}  gauge, the rate that opens the circuit (failure-rate policy)
//	breakerbox_circuit_open_timeout_seconds{circuit}    gauge, the configured open timeout
//
// The settings gauges make "near the threshold" an alert:
// consecutive_failures / failure_threshold ≥ 0.8.
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
//
// With thousands of breakers, serve the Collector with Handler rather than
// through a prometheus.Registry: it writes the exposition straight from the
// snapshots, without building a client_model message per series. A call
// duration histogram is opt-in: see Durations.
package breakerprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/breaker"
)

// Collector is a prometheus.Collector over the breakers of a registry.
type Collector struct {
	registry *breaker.Registry
}

// NewCollector returns a Collector over registry's breakers. Register it
// with a prometheus.Registerer, or serve it with Handler.
func NewCollector(registry *breaker.Registry) *Collector {
	return &Collector{registry: registry}
}

// circuit is what one breaker's series are made of.
type circuit struct {
	s   breaker.Snapshot
	cfg breaker.Config
}

// sink receives the samples of one family for one circuit, with the values
// of the family's labels beside circuit (none, one or two: unused ones "").
// Two fixed arguments rather than variadic ones: through an interface, a
// variadic slice is allocated on every call.
type sink interface {
	emit(f *family, c *circuit, v float64, l1, l2 string)
}

// family is one metric family: its description and how to read its samples
// from a circuit. Collect and the text writer share these, so the two ways
// of serving cannot drift apart.
type family struct {
	name, help string
	typ        prometheus.ValueType
	labels     []string // beside circuit
	desc       *prometheus.Desc
	samples    func(k sink, f *family, c *circuit)
}

var families = []*family{
	{name: "breakerbox_calls_total", typ: prometheus.CounterValue, labels: []string{"outcome"},
		help: "Calls let through by the circuit breaker, by outcome (success only when the breaker counts successes).",
		samples: func(k sink, f *family, c *circuit) {
			if c.s.SuccessesCounted {
				k.emit(f, c, float64(c.s.Successes), "success", "")
			}
			k.emit(f, c, float64(c.s.Failures), "failure", "")
			k.emit(f, c, float64(c.s.Ignored), "ignored", "")
		}},
	{name: "breakerbox_circuit_consecutive_failures", typ: prometheus.GaugeValue,
		help: "Consecutive failures in CLOSED so far (consecutive-failure policy); the circuit opens at breakerbox_circuit_failure_threshold.",
		samples: func(k sink, f *family, c *circuit) {
			if c.cfg.FailureRate == nil {
				k.emit(f, c, float64(c.s.ConsecutiveFailures), "", "")
			}
		}},
	{name: "breakerbox_circuit_failure_rate", typ: prometheus.GaugeValue,
		help: "Share of failed calls in the sliding window, 0 to 1 (failure-rate policy; 0 while the window is empty).",
		samples: func(k sink, f *family, c *circuit) {
			if c.cfg.FailureRate != nil {
				r := 0.0
				if c.s.WindowCalls > 0 {
					r = float64(c.s.WindowFailures) / float64(c.s.WindowCalls)
				}
				k.emit(f, c, r, "", "")
			}
		}},
	{name: "breakerbox_circuit_failure_rate_threshold", typ: prometheus.GaugeValue,
		help: "Setting: the failure share in the window that opens the circuit (failure-rate policy).",
		samples: func(k sink, f *family, c *circuit) {
			if c.cfg.FailureRate != nil {
				k.emit(f, c, c.cfg.FailureRate.Threshold, "", "")
			}
		}},
	{name: "breakerbox_circuit_failure_threshold", typ: prometheus.GaugeValue,
		help: "Setting: the consecutive failures that open the circuit (consecutive-failure policy).",
		samples: func(k sink, f *family, c *circuit) {
			if c.cfg.FailureRate == nil {
				k.emit(f, c, float64(c.cfg.FailureThreshold), "", "")
			}
		}},
	{name: "breakerbox_circuit_open_timeout_seconds", typ: prometheus.GaugeValue,
		help: "Setting: how long the circuit stays open before a probe (before any backoff).",
		samples: func(k sink, f *family, c *circuit) {
			k.emit(f, c, c.cfg.OpenTimeout.Seconds(), "", "")
		}},
	{name: "breakerbox_circuit_state", typ: prometheus.GaugeValue, labels: []string{"state"},
		help: "Current state of the circuit breaker: 1 for the state it is in, 0 for the others.",
		samples: func(k sink, f *family, c *circuit) {
			for _, st := range states {
				v := 0.0
				if c.s.State == st {
					v = 1
				}
				k.emit(f, c, v, stateNames[st], "")
			}
		}},
	{name: "breakerbox_open_until_seconds", typ: prometheus.GaugeValue,
		help: "Seconds until the circuit breaker allows a probe: the rest of the open timeout, or while every half-open probe slot is taken the time until one frees; else 0.",
		samples: func(k sink, f *family, c *circuit) {
			k.emit(f, c, c.s.RetryAfter.Seconds(), "", "")
		}},
	{name: "breakerbox_rejected_total", typ: prometheus.CounterValue, labels: []string{"reason"},
		help: "Calls rejected by the circuit breaker without running, by reason.",
		samples: func(k sink, f *family, c *circuit) {
			k.emit(f, c, float64(c.s.RejectedHalfOpen), "half_open_full", "")
			k.emit(f, c, float64(c.s.Rejected), "open", "")
		}},
	{name: "breakerbox_transitions_total", typ: prometheus.CounterValue, labels: []string{"from", "to"},
		help: "State transitions of the circuit breaker.",
		samples: func(k sink, f *family, c *circuit) {
			for _, from := range states {
				for _, to := range states {
					n := c.s.TransitionCount(from, to)
					if from == to || n == 0 && !isAutomatic(from, to) {
						continue
					}
					k.emit(f, c, float64(n), stateNames[from], stateNames[to])
				}
			}
		}},
}

func init() {
	for _, f := range families {
		f.desc = prometheus.NewDesc(f.name, f.help, append([]string{"circuit"}, f.labels...), nil)
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector. It reads one Snapshot per breaker.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	k := chanSink(ch)
	for _, b := range c.registry.All() {
		ci := circuit{s: b.Snapshot(), cfg: b.Config()}
		for _, f := range families {
			f.samples(k, f, &ci)
		}
	}
}

type chanSink chan<- prometheus.Metric

func (ch chanSink) emit(f *family, c *circuit, v float64, l1, l2 string) {
	lv := append(make([]string, 0, 3), c.s.Name, l1, l2)
	ch <- prometheus.MustNewConstMetric(f.desc, f.typ, v, lv[:1+len(f.labels)]...)
}

// snapshots reads every breaker once.
func (c *Collector) snapshots() []circuit {
	all := c.registry.All()
	out := make([]circuit, len(all))
	for i, b := range all {
		out[i] = circuit{s: b.Snapshot(), cfg: b.Config()}
	}
	return out
}

var states = breaker.States()

// stateNames are the states' label values, built once.
var stateNames = func() map[breaker.State]string {
	m := map[breaker.State]string{}
	for _, s := range states {
		m[s] = s.String()
	}
	return m
}()

// automatic are the transitions the breaker makes by itself; they are
// exported from the start, the others once they happened.
var automatic = [...][2]breaker.State{
	{breaker.Closed, breaker.Open},
	{breaker.Open, breaker.HalfOpen},
	{breaker.HalfOpen, breaker.Closed},
	{breaker.HalfOpen, breaker.Open},
}

func isAutomatic(from, to breaker.State) bool {
	for _, t := range automatic {
		if t == [2]breaker.State{from, to} {
			return true
		}
	}
	return false
}
