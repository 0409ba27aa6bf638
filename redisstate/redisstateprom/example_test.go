package redisstateprom_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/breakerbox/breakerbox/redisstate"
	"github.com/breakerbox/breakerbox/redisstate/redisstateprom"
)

// Export a fleet's health next to the breakers' metrics. Here Redis does not
// answer (nothing listens on port 1), so the replica is degraded: its
// breakers decide alone, and the gauge says so.
func ExampleNewCollector() {
	fleet, err := redisstate.New(context.Background(), redisstate.Options{URL: "redis://127.0.0.1:1/0", Replica: "replica-1",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	defer fleet.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(redisstateprom.NewCollector(fleet))
	// http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP breakerbox_fleet_degraded 1 while this replica cannot reach Redis and its breakers decide on local counts alone.
# TYPE breakerbox_fleet_degraded gauge
breakerbox_fleet_degraded{replica="replica-1"} 1
`), "breakerbox_fleet_degraded")
	fmt.Println(err)
	// Output: <nil>
}
