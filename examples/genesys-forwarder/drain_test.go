package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/brokertest"
)

// A backlog built during an outage drains once the region returns: every
// message is delivered, none lost or dead-lettered. The drain's duration
// (from the region's return to the last message delivered) is logged, for
// the record; it is not asserted, since it depends on the machine's load.
func TestBacklogDrainsAfterTheRegionReturnsNATS(t *testing.T) {
	url := brokertest.NATS(t)
	testDrain(t, url, natsBroker(t, url))
}

func TestBacklogDrainsAfterTheRegionReturnsRabbitMQ(t *testing.T) {
	url := brokertest.RabbitMQ(t)
	testDrain(t, url, rabbitBroker(t, url))
}

func testDrain(t *testing.T, url string, b forwarderBroker) {
	const backlog = 300
	const openTimeout = time.Second
	api := newGenesysAPI(t)
	api.setDown("eu-west-1", true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, logs, stop := forwarder(t, ctx, "-broker", url, "-api", api.URL+"/genesys", "-open-timeout", openTimeout.String())
	if err := b.ready(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range backlog {
		if err := b.publish(ctx, "eu-west-1", fmt.Appendf(nil, `{"id": "eu-%03d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	// The outage goes on past a failed probe: the messages of that probe
	// and those in hand as the circuit opened wait on the broker too.
	waitUntil(t, ctx, "a failed probe", func() bool {
		return strings.Contains(logs.String(), "Circuit breaker OPEN for genesys/eu-west-1 again: probe failed")
	})
	api.setDown("eu-west-1", false)
	back := time.Now()
	var closed time.Time // seen within the 10 ms of waitUntil's polling
	waitUntil(t, ctx, "the backlog to drain", func() bool {
		if closed.IsZero() && strings.Contains(logs.String(), "Circuit breaker CLOSED for genesys/eu-west-1") {
			closed = time.Now()
		}
		return api.delivered() == backlog
	})
	drain := time.Since(back)
	if closed.IsZero() {
		closed = time.Now()
	}
	dead, err := b.dead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("%v; logs:\n%s", err, logs)
	}
	dups := 0
	for i := range backlog {
		dups += api.times(fmt.Sprintf("eu-%03d", i)) - 1
	}
	t.Logf("DRAIN %s: %d messages backlogged, all delivered %v after the region returned (open timeout %v, then 3 probes to close), %v of it after the circuit closed (concurrency 8); lost 0, dead-lettered %d, delivered twice %d",
		strings.SplitN(url, ":", 2)[0], backlog, drain.Round(time.Millisecond), openTimeout, (drain - closed.Sub(back)).Round(time.Millisecond), dead, dups)
	if dead != 0 {
		t.Errorf("dead-lettered %d, want 0", dead)
	}
}
