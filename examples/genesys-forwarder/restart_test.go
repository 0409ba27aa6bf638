package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/brokertest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// The broker restarted twice under the forwarder: once cleanly, then killed
// with kill -9 mid-traffic and started again on its port with its data. The
// forwarder stays up, says once per outage (per connection) that the broker
// is gone and once that it is back, consumes again, and every message reaches the API at
// least once; none is lost or dead-lettered.
func TestForwarderSurvivesABrokerRestartNATS(t *testing.T) {
	srv := brokertest.StartNATS(t)
	// Within a session the NATS client reconnects by itself; natsgate's
	// ReconnectOptions log the outage.
	testSurvivesRestart(t, srv, natsBroker(t, srv.URL()), 1,
		"connection to the NATS server lost; reconnecting until it is back", "natsgate: reconnected to the NATS server")
}

func TestForwarderSurvivesABrokerRestartRabbitMQ(t *testing.T) {
	srv := brokertest.StartRabbitMQ(t)
	// Each region's consumer has its connection, and dials it again by
	// itself (amqpgate's Config.Dial): one line per region per outage.
	testSurvivesRestart(t, srv, rabbitBroker(t, srv.URL()), 3,
		"amqpgate: lost the broker; reconnecting with backoff", "amqpgate: reconnected to the broker")
}

// forwarder runs the forwarder in the test's process with args until the
// test stops it; stop returns run's error.
func forwarder(t *testing.T, ctx context.Context, args ...string) (cfg Config, logs *syncbuf.Buffer, stop func() error) {
	t.Helper()
	cfg, err := parseFlags(args, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	logs = &syncbuf.Buffer{}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()
	t.Cleanup(cancel)
	return cfg, logs, func() error {
		select {
		case err := <-done:
			return fmt.Errorf("the forwarder exited before it was stopped: %v", err)
		default:
		}
		cancel()
		return <-done
	}
}

func testSurvivesRestart(t *testing.T, srv *brokertest.Server, b forwarderBroker, perOutage int, lostLine, backLine string) {
	const perRegion = 100
	api := newGenesysAPI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg, logs, stop := forwarder(t, ctx, "-broker", srv.URL(), "-api", api.URL+"/genesys", "-open-timeout", "200ms", "-concurrency", "4")
	if err := b.ready(ctx); err != nil {
		t.Fatalf("the forwarder never set up the broker: %v; logs:\n%s", err, logs)
	}
	// A clean restart first. It also makes RabbitMQ (3.10) write down the
	// quorum queues the forwarder just declared: it keeps their registry in
	// a file it saves every few minutes, and a node killed before that
	// forgets a new queue (which then never elects a leader again), an
	// accident of the test's timing that production queues, declared long
	// before a crash, do not have.
	srv.Stop()
	srv.Restart()
	waitUntil(t, ctx, "the forwarder back after a clean restart", func() bool { return strings.Count(logs.String(), backLine) == perOutage }, logs, brokerOutput{srv})

	// The publisher keeps going through the outage, each message until the
	// broker confirms it.
	var want []string
	published := make(chan error, 1)
	go func() {
		for i := range perRegion {
			for _, region := range cfg.Regions {
				id := fmt.Sprintf("%s-%03d", region, i)
				if err := b.publish(ctx, region, fmt.Appendf(nil, `{"id": %q}`, id)); err != nil {
					published <- err
					return
				}
			}
		}
		published <- nil
	}()
	for _, region := range cfg.Regions {
		for i := range perRegion {
			want = append(want, fmt.Sprintf("%s-%03d", region, i))
		}
	}
	waitUntil(t, ctx, "a tenth of the messages delivered", func() bool { return api.delivered() >= len(want)/10 }, logs, brokerOutput{srv})
	srv.Kill()
	atKill := api.delivered()
	time.Sleep(500 * time.Millisecond) // the forwarder fetches, acks and dials while the broker is gone
	srv.Restart()
	if err := <-published; err != nil {
		t.Fatalf("publishing: %v; logs:\n%s\n%s", err, logs, brokerOutput{srv})
	}
	waitUntil(t, ctx, "every message delivered", func() bool { return api.delivered() == len(want) }, logs, brokerOutput{srv})
	if atKill == len(want) {
		t.Fatal("every message was delivered before the broker died: nothing was tested")
	}
	dead, err := b.dead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("%v; logs:\n%s", err, logs)
	}
	lost := 0
	for _, id := range want {
		if api.times(id) == 0 {
			lost++
		}
	}
	t.Logf("%d messages, %d delivered when the broker was killed, lost %d, dead-lettered %d, requests %d",
		len(want), atKill, lost, dead, api.requestsTo("us-east-1")+api.requestsTo("eu-west-1")+api.requestsTo("ap-southeast-2"))
	if lost != 0 || dead != 0 {
		t.Errorf("lost %d, dead-lettered %d; want 0 and 0", lost, dead)
	}
	for _, line := range []string{lostLine, backLine} {
		if n := strings.Count(logs.String(), line); n != 2*perOutage {
			t.Errorf("the logs say %q %d times over 2 outages, want %d; logs:\n%s", line, n, 2*perOutage, logs)
		}
	}
}

// waitUntil polls cond until it holds; if ctx ends first, the test fails
// with what, and the logs given (the forwarder's, the broker's).
// brokerOutput shows a broker's output in a failure.
type brokerOutput struct{ *brokertest.Server }

func (b brokerOutput) String() string { return "broker output:\n" + b.Output() }

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool, logs ...fmt.Stringer) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			var b strings.Builder
			for _, l := range logs {
				b.WriteString("\n" + l.String())
			}
			t.Fatalf("timed out waiting for %s%s", what, &b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stayConnected dials again after each failure, logs each outage once
// however many dials fail in it, and gives up only on a permanent error.
func TestStayConnectedLogsEachOutageOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Each session: up (consuming) or not, then the error it ends with.
	script := []struct {
		up  bool
		err error
	}{
		{false, errors.New("connection refused")}, // down at start
		{false, errors.New("connection refused")},
		{true, errors.New("connection reset")}, // back, then lost again
		{false, errors.New("connection refused")},
		{false, errors.New("connection refused")},
		{true, errors.New("connection reset")}, // back, lost once more
		{false, permanent{errors.New("ACCESS_REFUSED")}},
	}
	logs := &syncbuf.Buffer{}
	sessions := 0
	err := stayConnected(ctx, "amqp://broker", slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		func(ctx context.Context, up func()) error {
			s := script[sessions]
			sessions++
			if s.up {
				up()
			}
			return s.err
		})
	if !strings.Contains(fmt.Sprint(err), "ACCESS_REFUSED") || sessions != len(script) {
		t.Fatalf("stayConnected: %v after %d sessions, want ACCESS_REFUSED after %d", err, sessions, len(script))
	}
	for line, want := range map[string]int{
		"broker connection lost": 3, "broker connection back": 2, "broker still unreachable": 3,
	} {
		if n := strings.Count(logs.String(), line); n != want {
			t.Errorf("%q logged %d times, want %d; logs:\n%s", line, n, want, logs)
		}
	}
}
