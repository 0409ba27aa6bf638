package redisstateprom_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/redisstate"
	"github.com/breakerbox/breakerbox/redisstate/redisstateprom"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestCollectorExportsTheFleetsStats(t *testing.T) {
	srv := redistest.Start(t)
	f, err := redisstate.New(context.Background(), redisstate.Options{URL: srv.URL(), Replica: "replica-1", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for deadline := time.Now().Add(10 * time.Second); f.Stats().Degraded; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fleet does not join")
		}
	}
	// A message from a newer wire version is ignored and counted.
	if err := srv.Client().Publish(context.Background(), "breakerbox:events:v1", `{"v":2}`).Err(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); f.Stats().Malformed == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the message is not counted")
		}
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(redisstateprom.NewCollector(f))
	want := `
# HELP breakerbox_fleet_degraded 1 while this replica cannot reach Redis and its breakers decide on local counts alone.
# TYPE breakerbox_fleet_degraded gauge
breakerbox_fleet_degraded{replica="replica-1"} 0
# HELP breakerbox_fleet_malformed_total Messages and script replies from Redis ignored because they could not be decoded (a newer wire version, a broken or hostile Redis); the log says what was wrong.
# TYPE breakerbox_fleet_malformed_total counter
breakerbox_fleet_malformed_total{replica="replica-1"} 1
# HELP breakerbox_fleet_state_losses_total Times this replica found a circuit's fleet state lost in Redis (evicted, deleted, restarted empty) and restored it; one replica counts each loss.
# TYPE breakerbox_fleet_state_losses_total counter
breakerbox_fleet_state_losses_total{replica="replica-1"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"breakerbox_fleet_degraded", "breakerbox_fleet_malformed_total", "breakerbox_fleet_state_losses_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(redisstateprom.NewCollector(f)); n != 11 {
		t.Fatalf("%d metrics, want 11", n)
	}
	if problems, err := testutil.CollectAndLint(redisstateprom.NewCollector(f)); err != nil || len(problems) != 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}

func TestCollectorSaysAReplicaIsDegraded(t *testing.T) {
	f, err := redisstate.New(context.Background(), redisstate.Options{URL: "redis://127.0.0.1:1/0", Replica: "alone", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := testutil.ToFloat64(prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		m := make(chan prometheus.Metric, 16)
		redisstateprom.NewCollector(f).Collect(m)
		close(m)
		ch <- <-m // the first: breakerbox_fleet_degraded
	}))
	if got != 1 {
		t.Fatalf("breakerbox_fleet_degraded = %v, want 1 while Redis does not answer", got)
	}
}
