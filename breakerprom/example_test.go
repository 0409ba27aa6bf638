package breakerprom_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerprom"
)

// quiet drops the breakers' transition logs, which would go to stderr.
var quiet = slog.New(slog.DiscardHandler)

func ExampleNewCollector() {
	registry, _ := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{FailureThreshold: 1, Logger: quiet},
	})
	metrics := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	metrics.MustRegister(breakerprom.NewCollector(registry))
	admin := http.NewServeMux()
	admin.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))

	cloudflare, err := registry.Get("cloudflare")
	if err != nil {
		panic(err)
	}
	cloudflare.Do(context.Background(), func(context.Context) error {
		return errors.New("503 Service Unavailable")
	})

	// What a scrape would see:
	want := `
# HELP breakerbox_circuit_state Current state of the circuit breaker: 1 for the state it is in, 0 for the others.
# TYPE breakerbox_circuit_state gauge
breakerbox_circuit_state{circuit="cloudflare",state="closed"} 0
breakerbox_circuit_state{circuit="cloudflare",state="disabled"} 0
breakerbox_circuit_state{circuit="cloudflare",state="forced_open"} 0
breakerbox_circuit_state{circuit="cloudflare",state="half_open"} 0
breakerbox_circuit_state{circuit="cloudflare",state="open"} 1
`
	err = testutil.GatherAndCompare(metrics, strings.NewReader(want), "breakerbox_circuit_state")
	fmt.Println(err)
	// Output: <nil>
}

// ExampleDurations times calls by outcome, and serves the breakers and the
// histogram on one /metrics with Handler, which writes the breakers' series
// straight from their snapshots.
func ExampleDurations() {
	registry, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: quiet}})
	durations := breakerprom.NewDurations(nil) // 1 ms … 30 s
	gathered := prometheus.NewRegistry()
	gathered.MustRegister(durations)
	admin := http.NewServeMux()
	admin.Handle("/metrics", breakerprom.Handler(gathered, breakerprom.NewCollector(registry)))

	cloudflare := registry.MustGet("cloudflare")
	durations.Do(context.Background(), cloudflare, func(context.Context) error { return nil })
	durations.Do(context.Background(), cloudflare, func(context.Context) error { return errors.New("503") })

	fmt.Println(testutil.CollectAndCount(durations, "breakerbox_calls_seconds"), "series: one per outcome seen")
	// Output: 2 series: one per outcome seen
}
