package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/internal/brokertest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// The forwarder end to end on a real nats-server: eu-west-1's API is down for
// longer than the open timeout, then recovers; one message is refused (400).
// Every good message reaches the API exactly once, the refused one is
// dead-lettered, and eu-west-1's consumer paused and resumed.
func TestForwarderWaitsOutARegionOutageNATS(t *testing.T) {
	url := brokertest.NATS(t)
	var js jetstream.JetStream
	testForwarder(t, url, forwarderBroker{
		ready: func(ctx context.Context) error {
			nc, err := nats.Connect(url)
			if err != nil {
				return err
			}
			t.Cleanup(nc.Close)
			js, _ = jetstream.New(nc)
			for ctx.Err() == nil { // the forwarder creates the stream
				if _, err := js.Stream(ctx, "INBOUND"); err == nil {
					return nil
				}
				time.Sleep(10 * time.Millisecond)
			}
			return ctx.Err()
		},
		publish: func(ctx context.Context, region string, body []byte) error {
			_, err := js.Publish(ctx, "inbound."+region, body)
			return err
		},
		dead: func(ctx context.Context) (int, error) {
			dead, err := js.Stream(ctx, "INBOUND_DEAD")
			if err != nil {
				return 0, err
			}
			info, err := dead.Info(ctx)
			if err != nil {
				return 0, err
			}
			return int(info.State.Msgs), nil
		},
	})
}

// The same on a real RabbitMQ node: quorum queues, retry queues, the
// dead-letter exchange, all declared by the forwarder.
func TestForwarderWaitsOutARegionOutageRabbitMQ(t *testing.T) {
	url := brokertest.RabbitMQ(t)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	queueReady := func(name string) (int, error) {
		c, err := conn.Channel() // a missing queue closes the channel that asks
		if err != nil {
			return 0, err
		}
		defer c.Close()
		q, err := c.QueueDeclarePassive(name, true, false, false, false, nil)
		return q.Messages, err
	}
	testForwarder(t, url, forwarderBroker{
		ready: func(ctx context.Context) error {
			for ctx.Err() == nil { // the forwarder declares the queues
				if _, err := queueReady("inbound.eu-west-1.retry"); err == nil {
					return nil
				}
				time.Sleep(20 * time.Millisecond)
			}
			return ctx.Err()
		},
		publish: func(ctx context.Context, region string, body []byte) error {
			conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "inbound."+region, true, false,
				amqp.Publishing{Body: body, DeliveryMode: amqp.Persistent, ContentType: "application/json"})
			if err != nil {
				return err
			}
			if ok, err := conf.WaitContext(ctx); err != nil || !ok {
				return fmt.Errorf("publish not confirmed: %v", err)
			}
			return nil
		},
		dead: func(context.Context) (int, error) { return queueReady("inbound.dead") },
	})
}

type forwarderBroker struct {
	ready   func(ctx context.Context) error // waits for the forwarder's streams or queues
	publish func(ctx context.Context, region string, body []byte) error
	dead    func(ctx context.Context) (int, error)
}

func testForwarder(t *testing.T, url string, b forwarderBroker) {
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	got := map[string]int{}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		region, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/genesys/"), "/")
		id := r.Header.Get("Idempotency-Key")
		switch {
		case "/"+rest != inboundPath || r.Method != http.MethodPost:
			http.Error(w, "not found", http.StatusNotFound)
		case strings.HasPrefix(id, "bad"):
			http.Error(w, "unknown integration", http.StatusBadRequest)
		case region == "eu-west-1" && down.Load():
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			mu.Lock()
			got[id]++
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer api.Close()

	cfg, err := parseFlags([]string{"-broker", url, "-api", api.URL + "/genesys", "-open-timeout", "200ms", "-concurrency", "4"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()

	if err := b.ready(ctx); err != nil {
		t.Fatalf("the forwarder never set up the broker: %v; logs:\n%s", err, logs)
	}
	var want []string
	for _, region := range cfg.Regions {
		for i := range 40 {
			id := fmt.Sprintf("%s-%02d", region, i)
			want = append(want, id)
			if err := b.publish(ctx, region, fmt.Appendf(nil, `{"id": %q, "text": "hello"}`, id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.publish(ctx, "us-east-1", []byte(`{"id": "bad-1"}`)); err != nil {
		t.Fatal(err)
	}

	// eu-west-1's gate, and no other, pauses.
	pausedEU := func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "queue gate paused") && strings.Contains(line, "gate=genesys/eu-west-1") {
				return true
			}
		}
		return false
	}
	for !pausedEU() {
		if ctx.Err() != nil {
			t.Fatalf("eu-west-1's gate never paused; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // longer than the open timeout
	down.Store(false)
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	for delivered() < len(want) {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d messages delivered", delivered(), len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		n, err := b.dead(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d dead letters, want 1 (bad-1)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times, want 1", id, got[id])
		}
	}
	for _, line := range []string{"queue gate resumed", "Circuit breaker OPEN for genesys/eu-west-1"} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("logs lack %q", line)
		}
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "queue gate paused") && !strings.Contains(line, "gate=genesys/eu-west-1") {
			t.Errorf("another region's gate paused: %s", line)
		}
	}
}

func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-broker", "redis://x"}, "-broker \"redis://x\": want nats://"},
		{[]string{"-api", "127.0.0.1:7070"}, "-api \"127.0.0.1:7070\": want an http(s) URL"},
		{[]string{"-regions", " , "}, "-regions is empty"},
		{[]string{"-concurrency", "0"}, "-concurrency 0: must be ≥ 1"},
		{[]string{"-open-timeout", "0s"}, "-open-timeout 0s: must be > 0"},
	} {
		var out bytes.Buffer
		if _, err := parseFlags(tc.args, &out); err == nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: %v, output %q; want %q", tc.args, err, out.String(), tc.want)
		}
	}
}
