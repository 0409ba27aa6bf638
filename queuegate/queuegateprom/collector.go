// Package queuegateprom exports the Stats of queuegate gates as Prometheus
// metrics. It is the only part of queuegate that imports the Prometheus
// client; the gates themselves import only the standard library and package
// breaker.
//
// A Collector reads each gate's Stats when Prometheus scrapes, so it adds
// nothing to the consumers. Its metrics, each labelled with the gate's name as
// gate:
//
//	breakerbox_queue_gate_mode{gate, mode}             gauge, 1 for the current mode, 0 for the others
//	                                                  (flowing, probing, paused)
//	breakerbox_queue_gate_pauses_total{gate}            counter, times the consumer paused
//	breakerbox_queue_gate_resumes_total{gate}           counter, times it went back to full speed
//	breakerbox_queue_gate_paused_seconds_total{gate}    counter, time not flowing
//	breakerbox_queue_gate_messages_total{gate, verdict} counter; verdict is ack, defer, retry or dead_letter
//	breakerbox_queue_gate_probes_total{gate}            counter, messages admitted as half-open probes
//	breakerbox_queue_gate_in_flight{gate}               gauge, messages being processed
package queuegateprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/queuegate"
)

// Collector is a prometheus.Collector over a fixed set of gates.
type Collector struct {
	gates                             []*queuegate.Gate
	mode, pauses, resumes, pausedTime *prometheus.Desc
	messages, probes, inFlight        *prometheus.Desc
}

// NewCollector returns a Collector over gates. Register it with a
// prometheus.Registerer.
func NewCollector(gates ...*queuegate.Gate) *Collector {
	g := []string{"gate"}
	return &Collector{
		gates: gates,
		mode: prometheus.NewDesc("breakerbox_queue_gate_mode",
			"Mode of the queue gate: 1 for the mode it is in (flowing, probing, paused), 0 for the others.",
			[]string{"gate", "mode"}, nil),
		pauses: prometheus.NewDesc("breakerbox_queue_gate_pauses_total",
			"Times the queue consumer paused because its circuit opened.", g, nil),
		resumes: prometheus.NewDesc("breakerbox_queue_gate_resumes_total",
			"Times the queue consumer resumed full speed because its circuit closed.", g, nil),
		pausedTime: prometheus.NewDesc("breakerbox_queue_gate_paused_seconds_total",
			"Time the queue consumer was not flowing (paused or probing).", g, nil),
		messages: prometheus.NewDesc("breakerbox_queue_gate_messages_total",
			"Messages judged by the queue gate, by verdict: ack, defer (given back for the outage, not charged to the message: not attempted with the circuit open, a failed probe, a failure that opened the circuit, or cut short by a stopping consumer), retry (a failure charged to the message), dead_letter.",
			[]string{"gate", "verdict"}, nil),
		probes: prometheus.NewDesc("breakerbox_queue_gate_probes_total",
			"Messages admitted as half-open probes.", g, nil),
		inFlight: prometheus.NewDesc("breakerbox_queue_gate_in_flight",
			"Messages admitted by the queue gate and being processed.", g, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.mode, c.pauses, c.resumes, c.pausedTime, c.messages, c.probes, c.inFlight} {
		ch <- d
	}
}

var modes = [...]queuegate.Mode{queuegate.Flowing, queuegate.Probing, queuegate.Paused}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, g := range c.gates {
		s := g.Stats()
		for _, m := range modes {
			v := 0.0
			if s.Mode == m {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.mode, prometheus.GaugeValue, v, s.Name, m.String())
		}
		ch <- prometheus.MustNewConstMetric(c.pauses, prometheus.CounterValue, float64(s.Pauses), s.Name)
		ch <- prometheus.MustNewConstMetric(c.resumes, prometheus.CounterValue, float64(s.Resumes), s.Name)
		ch <- prometheus.MustNewConstMetric(c.pausedTime, prometheus.CounterValue, s.PausedTime.Seconds(), s.Name)
		for _, v := range []struct {
			a queuegate.Action
			n uint64
		}{{queuegate.Ack, s.Acked}, {queuegate.Defer, s.Deferred}, {queuegate.Retry, s.Retried}, {queuegate.DeadLetter, s.DeadLettered}} {
			ch <- prometheus.MustNewConstMetric(c.messages, prometheus.CounterValue, float64(v.n), s.Name, v.a.String())
		}
		ch <- prometheus.MustNewConstMetric(c.probes, prometheus.CounterValue, float64(s.Probes), s.Name)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight), s.Name)
	}
}
