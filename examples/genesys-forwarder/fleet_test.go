package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/brokertest"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// Forwarders sharing their breakers through Redis (-state): forwarder A
// opens eu-west-1's circuit with its failures, then stops; forwarder B,
// started while the fleet holds the circuit OPEN (a restart, a scale-up),
// sends eu-west-1 nothing, though its messages wait on the queue, while it
// forwards the other regions' messages.
func TestANewForwarderJoinsAnOpenRegion(t *testing.T) {
	rdb := redistest.Start(t)
	url := brokertest.NATS(t)
	b := natsBroker(t, url)
	api := newGenesysAPI(t)
	api.setDown("eu-west-1", true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// No probe within the test: every request to eu-west-1 after B starts
	// would be one of the failing calls the fleet is there to spare.
	args := []string{"-broker", url, "-api", api.URL + "/genesys", "-state", rdb.URL(), "-open-timeout", "10m", "-concurrency", "4"}

	_, logsA, stopA := forwarder(t, ctx, args...)
	if err := b.ready(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := b.publish(ctx, "eu-west-1", fmt.Appendf(nil, `{"id": "eu-%02d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	// The fleet holds it OPEN (Redis decided it, from A's reports).
	redis := rdb.Client()
	waitUntil(t, ctx, "the fleet to open eu-west-1", func() bool {
		st, _ := redis.HGet(ctx, "breakerbox:{genesys/eu-west-1}", "st").Result()
		return st == "open"
	})
	if err := stopA(); err != nil {
		t.Fatalf("A: %v; logs:\n%s", err, logsA)
	}
	byA := api.requestsTo("eu-west-1")

	_, logsB, stopB := forwarder(t, ctx, args...)
	waitUntil(t, ctx, "B to learn eu-west-1 is open", func() bool {
		return strings.Contains(logsB.String(), "Circuit breaker OPEN for genesys/eu-west-1: opened by the fleet")
	})
	// B consumes: the other regions' messages go through it.
	for i := range 20 {
		if err := b.publish(ctx, "us-east-1", fmt.Appendf(nil, `{"id": "us-%02d"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, ctx, "B to forward us-east-1's messages", func() bool { return api.delivered() == 20 })
	if err := stopB(); err != nil {
		t.Fatalf("B: %v; logs:\n%s", err, logsB)
	}
	byB := api.requestsTo("eu-west-1") - byA
	t.Logf("requests to eu-west-1 while it was down: %d from A (opening the circuit), %d from B", byA, byB)
	if byB != 0 {
		t.Errorf("B sent %d requests to eu-west-1, which the fleet held OPEN; want 0; logs:\n%s", byB, logsB)
	}
	if byA < 10 {
		t.Errorf("A sent %d requests to eu-west-1; the circuit needs 10 failures to open", byA)
	}
}
