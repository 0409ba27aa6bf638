package queuegateprom_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/queuegateprom"
)

func TestCollectorExportsPausesAndVerdicts(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	clk := breakertest.NewClock()
	b, _ := breaker.New(breaker.Config{Name: "genesys/eu-west-1", FailureThreshold: 1, OpenTimeout: time.Minute, Clock: clk, Logger: quiet})
	g, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	p, _ := g.TryAcquire()
	p.Run(context.Background(), func(ctx context.Context) error { // opens the circuit: the outage's, deferred
		return b.Do(ctx, func(context.Context) error { return errors.New("503") })
	})
	g.Defer()
	clk.Advance(30 * time.Second)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(queuegateprom.NewCollector(g))
	want := `
# HELP breakerbox_queue_gate_mode Mode of the queue gate: 1 for the mode it is in (flowing, probing, paused), 0 for the others.
# TYPE breakerbox_queue_gate_mode gauge
breakerbox_queue_gate_mode{gate="genesys/eu-west-1",mode="flowing"} 0
breakerbox_queue_gate_mode{gate="genesys/eu-west-1",mode="paused"} 1
breakerbox_queue_gate_mode{gate="genesys/eu-west-1",mode="probing"} 0
# HELP breakerbox_queue_gate_pauses_total Times the queue consumer paused because its circuit opened.
# TYPE breakerbox_queue_gate_pauses_total counter
breakerbox_queue_gate_pauses_total{gate="genesys/eu-west-1"} 1
# HELP breakerbox_queue_gate_paused_seconds_total Time the queue consumer was not flowing (paused or probing).
# TYPE breakerbox_queue_gate_paused_seconds_total counter
breakerbox_queue_gate_paused_seconds_total{gate="genesys/eu-west-1"} 30
# HELP breakerbox_queue_gate_messages_total Messages judged by the queue gate, by verdict: ack, defer (given back for the outage, not charged to the message: not attempted with the circuit open, a failed probe, a failure that opened the circuit, or cut short by a stopping consumer), retry (a failure charged to the message), dead_letter.
# TYPE breakerbox_queue_gate_messages_total counter
breakerbox_queue_gate_messages_total{gate="genesys/eu-west-1",verdict="ack"} 0
breakerbox_queue_gate_messages_total{gate="genesys/eu-west-1",verdict="dead_letter"} 0
breakerbox_queue_gate_messages_total{gate="genesys/eu-west-1",verdict="defer"} 2
breakerbox_queue_gate_messages_total{gate="genesys/eu-west-1",verdict="retry"} 0
`
	err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"breakerbox_queue_gate_mode", "breakerbox_queue_gate_pauses_total",
		"breakerbox_queue_gate_paused_seconds_total", "breakerbox_queue_gate_messages_total")
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(queuegateprom.NewCollector(g)); n != 12 {
		t.Fatalf("%d series, want 12", n)
	}
}
