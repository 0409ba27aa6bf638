package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/redisstate"
)

// openFleet connects the shared state of a redis:// config. An unreachable
// Redis is not an error here: the fleet starts degraded and says so loudly.
func openFleet(cfg *config.Config, log *slog.Logger) (*redisstate.Fleet, error) {
	if cfg.State == "memory" {
		return nil, nil
	}
	// go-redis logs every failed dial of its pool; the fleet already says,
	// once, that Redis is unreachable. Keep the client's lines for debugging.
	redis.SetLogger(redisLogger{log})
	f, err := redisstate.New(redisstate.Options{URL: cfg.State, Quorum: cfg.Quorum, Logger: log, Replica: cfg.Replica})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return f, nil
}

// shareWithFleet gives the proxy the fleet's Redis for the transition
// history and the fleet-wide totals, and the fleet's replica name and
// health. The returned function closes the client.
func shareWithFleet(cfg *config.Config, f *redisstate.Fleet, opts *proxy.Options) (func(), error) {
	ro, err := redis.ParseURL(cfg.State)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	client := redis.NewClient(ro)
	opts.Redis = client
	opts.Replica = f.Replica()
	opts.Degraded = func() bool { return f.Stats().Degraded }
	return func() { client.Close() }, nil
}

// redisLogger sends the Redis client's own log lines to slog at DEBUG.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// checkFleet makes an unreachable Redis an error, for check-config.
func checkFleet(cfg *config.Config) error {
	f, err := openFleet(cfg, slog.New(slog.DiscardHandler))
	if err != nil || f == nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := f.Ping(ctx); err != nil {
		return fmt.Errorf("state: %s: %w", cfg.StateRedacted(), err)
	}
	return nil
}

// fleetCollector exports the fleet's health on /metrics.
type fleetCollector struct {
	f        *redisstate.Fleet
	degraded *prometheus.Desc
	counters []fleetCounter
}

type fleetCounter struct {
	desc *prometheus.Desc
	get  func(redisstate.Stats) uint64
}

func newFleetCollector(f *redisstate.Fleet) *fleetCollector {
	labels := prometheus.Labels{"replica": f.Replica()}
	counter := func(name, help string, get func(redisstate.Stats) uint64) fleetCounter {
		return fleetCounter{prometheus.NewDesc("breakerbox_fleet_"+name, help, nil, labels), get}
	}
	return &fleetCollector{f: f,
		degraded: prometheus.NewDesc("breakerbox_fleet_degraded",
			"1 while this replica cannot reach Redis and its breakers decide on local counts alone.", nil, labels),
		counters: []fleetCounter{
			counter("outcomes_reported_total", "Outcomes queued for Redis.", func(s redisstate.Stats) uint64 { return s.Reported }),
			counter("outcomes_dropped_total", "Outcomes not sent: queue full or Redis unreachable.", func(s redisstate.Stats) uint64 { return s.Dropped }),
			counter("applied_total", "Fleet states applied to local breakers.", func(s redisstate.Stats) uint64 { return s.Applied }),
			counter("resyncs_total", "Full resynchronisations with Redis (joins, reconnects).", func(s redisstate.Stats) uint64 { return s.Resyncs }),
			counter("faults_total", "Redis errors seen.", func(s redisstate.Stats) uint64 { return s.Faults }),
			counter("degradations_total", "Times this replica lost Redis.", func(s redisstate.Stats) uint64 { return s.Degradations }),
			counter("state_losses_total", "Times this replica found a circuit's fleet state lost in Redis (evicted, deleted, restarted empty) and restored it; one replica counts each loss.",
				func(s redisstate.Stats) uint64 { return s.StateLosses }),
		}}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.degraded
	for _, k := range c.counters {
		ch <- k.desc
	}
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.f.Stats()
	d := 0.0
	if s.Degraded {
		d = 1
	}
	ch <- prometheus.MustNewConstMetric(c.degraded, prometheus.GaugeValue, d)
	for _, k := range c.counters {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.CounterValue, float64(k.get(s)))
	}
}
