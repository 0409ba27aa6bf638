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
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/internal/brokertest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// genesysAPI is a fake Genesys-style API on loopback: it accepts inbound
// messages (and counts them by id), refuses those whose id starts with
// "bad" (400), and answers 503 for the regions set down.
type genesysAPI struct {
	*httptest.Server
	mu       sync.Mutex
	down     map[string]bool
	got      map[string]int // accepted messages by id
	requests map[string]int // requests by region
}

func newGenesysAPI(t *testing.T) *genesysAPI {
	a := &genesysAPI{down: map[string]bool{}, got: map[string]int{}, requests: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		region, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/genesys/"), "/")
		id := r.Header.Get("Idempotency-Key")
		a.mu.Lock()
		defer a.mu.Unlock()
		a.requests[region]++
		switch {
		case "/"+rest != inboundPath || r.Method != http.MethodPost:
			http.Error(w, "not found", http.StatusNotFound)
		case strings.HasPrefix(id, "bad"):
			http.Error(w, "unknown integration", http.StatusBadRequest)
		case a.down[region]:
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			a.got[id]++
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *genesysAPI) setDown(region string, down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.down[region] = down
}

// delivered is the number of distinct messages accepted.
func (a *genesysAPI) delivered() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func (a *genesysAPI) times(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[id]
}

func (a *genesysAPI) requestsTo(region string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests[region]
}

// The forwarder end to end on a real nats-server: eu-west-1's API is down for
// longer than the open timeout, then recovers; one message is refused (400).
// Every good message reaches the API exactly once, the refused one is
// dead-lettered, and eu-west-1's consumer paused and resumed.
func TestForwarderWaitsOutARegionOutageNATS(t *testing.T) {
	url := brokertest.NATS(t)
	testForwarder(t, url, natsBroker(t, url))
}

// The same on a real RabbitMQ node: quorum queues, retry queues, the
// dead-letter exchange, all declared by the forwarder.
func TestForwarderWaitsOutARegionOutageRabbitMQ(t *testing.T) {
	url := brokertest.RabbitMQ(t)
	testForwarder(t, url, rabbitBroker(t, url))
}

// forwarderBroker is the test's side of a broker: it publishes and counts
// dead letters, through connections of its own that outlive a restart of
// the broker.
type forwarderBroker struct {
	ready   func(ctx context.Context) error // waits for the forwarder's streams or queues
	publish func(ctx context.Context, region string, body []byte) error
	dead    func(ctx context.Context) (int, error)
}

// untilDone calls f until it succeeds or ctx ends: the broker may be
// restarting.
func untilDone(ctx context.Context, f func(ctx context.Context) error) error {
	for {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := f(fctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func natsBroker(t *testing.T, url string) forwarderBroker {
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return forwarderBroker{
		ready: func(ctx context.Context) error {
			return untilDone(ctx, func(ctx context.Context) error { // the forwarder creates the stream
				_, err := js.Stream(ctx, "INBOUND")
				return err
			})
		},
		publish: func(ctx context.Context, region string, body []byte) error {
			m := nats.NewMsg("inbound." + region)
			m.Data = body
			m.Header.Set(jetstream.MsgIDHeader, string(body)) // sent again after a failure, stored once
			return untilDone(ctx, func(ctx context.Context) error { _, err := js.PublishMsg(ctx, m); return err })
		},
		dead: func(ctx context.Context) (n int, err error) {
			err = untilDone(ctx, func(ctx context.Context) error {
				dead, err := js.Stream(ctx, "INBOUND_DEAD")
				if err != nil {
					return err
				}
				info, err := dead.Info(ctx)
				if err == nil {
					n = int(info.State.Msgs)
				}
				return err
			})
			return n, err
		},
	}
}

// rabbitBroker publishes with confirms, dialling again whenever the
// connection is gone.
func rabbitBroker(t *testing.T, url string) forwarderBroker {
	var mu sync.Mutex // one publisher at a time on the shared connection
	var conn *amqp.Connection
	var ch *amqp.Channel
	t.Cleanup(func() {
		if conn != nil {
			conn.Close()
		}
	})
	channel := func() (*amqp.Channel, error) {
		if conn == nil || conn.IsClosed() || ch == nil || ch.IsClosed() {
			if conn != nil {
				conn.Close()
			}
			c, err := amqp.Dial(url)
			if err != nil {
				return nil, err
			}
			conn = c
			if ch, err = conn.Channel(); err != nil {
				return nil, err
			}
			if err := ch.Confirm(false); err != nil {
				return nil, err
			}
		}
		return ch, nil
	}
	// queueLength asks on a channel of its own: a missing queue closes the
	// channel that asks.
	queueInfo := func(name string) (amqp.Queue, error) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := channel(); err != nil {
			return amqp.Queue{}, err
		}
		c, err := conn.Channel()
		if err != nil {
			return amqp.Queue{}, err
		}
		defer c.Close()
		return c.QueueDeclarePassive(name, true, false, false, false, nil)
	}
	queueLength := func(name string) (int, error) {
		q, err := queueInfo(name)
		return q.Messages, err
	}
	return forwarderBroker{
		ready: func(ctx context.Context) error {
			// The forwarder declares the queues, then each region's consumer
			// consumes: ready once every default region has its consumer, so
			// that what a test does next meets running consumers, not the
			// forwarder half-way through its set-up.
			return untilDone(ctx, func(context.Context) error {
				if _, err := queueLength("inbound.eu-west-1.retry"); err != nil {
					return err
				}
				for _, region := range []string{"us-east-1", "eu-west-1", "ap-southeast-2"} {
					if q, err := queueInfo("inbound." + region); err != nil || q.Consumers == 0 {
						return fmt.Errorf("inbound.%s: %d consumers, %v", region, q.Consumers, err)
					}
				}
				return nil
			})
		},
		publish: func(ctx context.Context, region string, body []byte) error {
			return untilDone(ctx, func(ctx context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				ch, err := channel()
				if err != nil {
					return err
				}
				conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "inbound."+region, true, false,
					amqp.Publishing{Body: body, DeliveryMode: amqp.Persistent, ContentType: "application/json"})
				if err != nil {
					return err
				}
				if ok, err := conf.WaitContext(ctx); err != nil || !ok {
					return fmt.Errorf("publish not confirmed: %v", err)
				}
				return nil
			})
		},
		dead: func(ctx context.Context) (n int, err error) {
			err = untilDone(ctx, func(context.Context) error { n, err = queueLength("inbound.dead"); return err })
			return n, err
		},
	}
}

func testForwarder(t *testing.T, url string, b forwarderBroker) {
	api := newGenesysAPI(t)
	api.setDown("eu-west-1", true)

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
	api.setDown("eu-west-1", false)
	for api.delivered() < len(want) {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d messages delivered", api.delivered(), len(want))
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
	for _, id := range want {
		if n := api.times(id); n != 1 {
			t.Errorf("%s delivered %d times, want 1", id, n)
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
		{[]string{"-ackwait", "30s"}, "-ackwait 30s: must exceed 39s, the longest a message stays in hand"},
		{[]string{"-state", "memcache://u:secret@x"}, "-state \"memcache://u:xxxxx@x\": want redis://"},
	} {
		var out bytes.Buffer
		if _, err := parseFlags(tc.args, &out); err == nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: %v, output %q; want %q", tc.args, err, out.String(), tc.want)
		}
	}
}
