package natsgate_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/brokertest"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/internal/chaos"
	"github.com/breakerbox/breakerbox/queuegate/natsgate"
)

const concurrency = 4

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// jetStream starts a nats-server of the test's own, with the INBOUND stream
// (inbound.<region>) and the DEAD stream (dead.>).
func jetStream(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(brokertest.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, subject := range map[string]string{"INBOUND": "inbound.>", "DEAD": "dead.>"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.MemoryStorage}); err != nil {
			t.Fatal(err)
		}
	}
	return nc, js
}

func consumerFor(t *testing.T, js jetstream.JetStream, region string) jetstream.Consumer {
	t.Helper()
	c, err := js.CreateOrUpdateConsumer(context.Background(), "INBOUND", jetstream.ConsumerConfig{
		Durable:       "forwarder-" + region,
		FilterSubject: "inbound." + region,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		// Unlimited, as the package documentation asks: JetStream counts
		// every delivery, failed probes included; natsgate's MaxRetries
		// bounds the failures charged to a message instead.
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func broker(t *testing.T, js jetstream.JetStream) chaos.Broker {
	return chaos.Broker{
		Name:     "nats",
		InFlight: concurrency,
		Publish: func(ctx context.Context, region string, ids []string) error {
			for _, id := range ids {
				m := nats.NewMsg("inbound." + region)
				m.Data = []byte(id)
				m.Header.Set(jetstream.MsgIDHeader, id)
				if _, err := js.PublishMsgAsync(m); err != nil {
					return err
				}
			}
			select {
			case <-js.PublishAsyncComplete():
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		Consume: func(ctx context.Context, region string, gate *queuegate.Gate, handle func(context.Context, string) error, o chaos.Options) chaos.Consumer {
			c, err := natsgate.New(natsgate.Config{
				Consumer:     consumerFor(t, js, region),
				Gate:         gate,
				Concurrency:  concurrency,
				FetchWait:    200 * time.Millisecond,
				DrainTimeout: o.DrainTimeout,
				Handler: func(ctx context.Context, msg jetstream.Msg) error {
					return handle(ctx, string(msg.Data()))
				},
				DeadLetter: natsgate.DeadLetterTo(js, "dead.inbound."+region),
				Logger:     quiet,
			})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			return chaos.Consumer{
				Wait:       func() error { return <-done },
				Fetches:    func() uint64 { return c.Stats().Fetches },
				Deliveries: func() uint64 { return c.Stats().Messages },
			}
		},
		DeadLettered: func(ctx context.Context) (int, error) {
			s, err := js.Stream(ctx, "DEAD")
			if err != nil {
				return 0, err
			}
			info, err := s.Info(ctx)
			if err != nil {
				return 0, err
			}
			return int(info.State.Msgs), nil
		},
	}
}

func TestChaosJetStream(t *testing.T) {
	_, js := jetStream(t)
	chaos.Run(t, broker(t, js))
}

// The scenarios of package chaos: a long outage, shutdown, a message in hand
// as the circuit opens, two probe slots.
func TestScenariosJetStream(t *testing.T) {
	_, js := jetStream(t)
	chaos.Scenarios(t, broker(t, js))
}

// A 4xx goes to the dead-letter subject, a success is acked, whatever the
// gate; and while the circuit is open the consumer makes no pull request.
func TestDeadLetterAndNoFetchWhileOpen(t *testing.T) {
	_, js := jetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"good-1", "bad-1", "good-2"} {
		if _, err := js.Publish(ctx, "inbound.us-east-1", []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", OpenTimeout: time.Hour, Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	handled := make(chan string, 10)
	c, err := natsgate.New(natsgate.Config{
		Consumer: consumerFor(t, js, "us-east-1"), Gate: gate, FetchWait: 100 * time.Millisecond, Logger: quiet,
		DeadLetter: natsgate.DeadLetterTo(js, "dead.inbound.us-east-1"),
		Handler: func(ctx context.Context, msg jetstream.Msg) error {
			id := string(msg.Data())
			handled <- id
			if strings.HasPrefix(id, "bad") {
				return queuegate.MarkDeadLetter(errors.New("400 Bad Request"))
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- c.Run(runCtx) }()
	for range 3 {
		<-handled
	}
	for gate.Stats().Acked+gate.Stats().DeadLettered < 3 {
		time.Sleep(5 * time.Millisecond)
	}
	dead, _ := js.Stream(ctx, "DEAD")
	for {
		info, _ := dead.Info(ctx)
		if info.State.Msgs == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	msg, err := dead.GetLastMsgForSubject(ctx, "dead.inbound.us-east-1")
	if err != nil || string(msg.Data) != "bad-1" || msg.Header.Get("Queuegate-Error") != "400 Bad Request" {
		t.Fatalf("dead letter %v (%v), want bad-1 with its error", msg, err)
	}

	b.ForceOpen()
	for gate.Mode() != queuegate.Paused {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(150 * time.Millisecond) // let a fetch in progress end
	fetches := c.Stats().Fetches
	if _, err := js.Publish(ctx, "inbound.us-east-1", []byte("good-3")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // three fetch waits: a polling consumer would pull
	if got := c.Stats().Fetches; got != fetches {
		t.Fatalf("%d pull requests while the circuit was open, want 0", got-fetches)
	}
	b.Reset()
	if id := <-handled; id != "good-3" {
		t.Fatalf("handled %s after the circuit closed, want good-3", id)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	b, _ := breaker.New(breaker.Config{})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b})
	var cons jetstream.Consumer = struct{ jetstream.Consumer }{}
	h := func(context.Context, jetstream.Msg) error { return nil }
	for _, tc := range []struct {
		cfg  natsgate.Config
		want string
	}{
		{natsgate.Config{Gate: gate, Handler: h}, "Config.Consumer is nil"},
		{natsgate.Config{Consumer: cons, Handler: h}, "Config.Gate is nil"},
		{natsgate.Config{Consumer: cons, Gate: gate}, "Config.Handler is nil"},
		{natsgate.Config{Consumer: cons, Gate: gate, Handler: h, Concurrency: -1}, "Config.Concurrency is -1"},
		{natsgate.Config{Consumer: cons, Gate: gate, Handler: h, FetchWait: -time.Second}, "Config.FetchWait is -1s"},
	} {
		if _, err := natsgate.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want an error containing %q", err, tc.want)
		}
	}
}
