// Package redisstateprom exports the Stats of a redisstate Fleet as
// Prometheus metrics. It is its own module, so that redisstate does not
// import the Prometheus client.
//
// A Collector reads the fleet's Stats when Prometheus scrapes, so it adds
// nothing to the calls. Its metrics, each labelled with the fleet's replica
// name as replica:
//
//	breakerbox_fleet_degraded                 gauge, 1 while the replica cannot reach Redis and decides alone
//	breakerbox_fleet_queued_outcomes          gauge, outcomes waiting to be sent to Redis
//	breakerbox_fleet_outcomes_reported_total  counter, outcomes queued for Redis
//	breakerbox_fleet_outcomes_dropped_total   counter, outcomes not sent: queue full or Redis unreachable
//	breakerbox_fleet_batches_total            counter, script round trips that carried outcomes
//	breakerbox_fleet_applied_total            counter, fleet states applied to local breakers
//	breakerbox_fleet_resyncs_total            counter, full resynchronisations (joins, reconnects)
//	breakerbox_fleet_faults_total             counter, Redis errors seen
//	breakerbox_fleet_degradations_total       counter, times the replica lost Redis
//	breakerbox_fleet_state_losses_total       counter, circuits whose state Redis lost and this replica restored
//	breakerbox_fleet_malformed_total          counter, messages and replies from Redis ignored as undecodable
package redisstateprom

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/redisstate"
)

// Collector is a prometheus.Collector over one Fleet.
type Collector struct {
	f        *redisstate.Fleet
	degraded *prometheus.Desc
	queued   *prometheus.Desc
	counters []counter
}

type counter struct {
	desc *prometheus.Desc
	get  func(redisstate.Stats) uint64
}

// NewCollector returns a Collector over f. Register it with a
// prometheus.Registerer.
func NewCollector(f *redisstate.Fleet) *Collector {
	labels := prometheus.Labels{"replica": f.Replica()}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("breakerbox_fleet_"+name, help, nil, labels)
	}
	c := func(name, help string, get func(redisstate.Stats) uint64) counter {
		return counter{desc(name, help), get}
	}
	return &Collector{f: f,
		degraded: desc("degraded", "1 while this replica cannot reach Redis and its breakers decide on local counts alone."),
		queued:   desc("queued_outcomes", "Outcomes waiting to be sent to Redis."),
		counters: []counter{
			c("outcomes_reported_total", "Outcomes queued for Redis.", func(s redisstate.Stats) uint64 { return s.Reported }),
			c("outcomes_dropped_total", "Outcomes not sent: queue full or Redis unreachable.", func(s redisstate.Stats) uint64 { return s.Dropped }),
			c("batches_total", "Script round trips that carried outcomes.", func(s redisstate.Stats) uint64 { return s.Batches }),
			c("applied_total", "Fleet states applied to local breakers.", func(s redisstate.Stats) uint64 { return s.Applied }),
			c("resyncs_total", "Full resynchronisations with Redis (joins, reconnects).", func(s redisstate.Stats) uint64 { return s.Resyncs }),
			c("faults_total", "Redis errors seen.", func(s redisstate.Stats) uint64 { return s.Faults }),
			c("degradations_total", "Times this replica lost Redis.", func(s redisstate.Stats) uint64 { return s.Degradations }),
			c("state_losses_total", "Times this replica found a circuit's fleet state lost in Redis (evicted, deleted, restarted empty) and restored it; one replica counts each loss.",
				func(s redisstate.Stats) uint64 { return s.StateLosses }),
			c("malformed_total", "Messages and script replies from Redis ignored because they could not be decoded (a newer wire version, a broken or hostile Redis); the log says what was wrong.",
				func(s redisstate.Stats) uint64 { return s.Malformed }),
		}}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.degraded
	ch <- c.queued
	for _, k := range c.counters {
		ch <- k.desc
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.f.Stats()
	d := 0.0
	if s.Degraded {
		d = 1
	}
	ch <- prometheus.MustNewConstMetric(c.degraded, prometheus.GaugeValue, d)
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.Queued))
	for _, k := range c.counters {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(k.get(s)))
	}
}
