// Command genesys-forwarder consumes inbound messages from a queue and
// forwards each to a Genesys-style API by region, as T10 asks: one circuit
// breaker per region (10 failures / 60 s / 3 successes / 1 probe), retries
// inside the breaker, and a queue gate per region, so that while a region is
// down its consumer stops fetching, the messages in hand come back later
// (never at once, never charged a failure), and the other regions keep
// flowing. Messages the API refuses (4xx) go to the dead-letter path.
//
//	go run ./examples/genesys-forwarder -broker nats://127.0.0.1:4222 -api http://127.0.0.1:7070/genesys
//	go run ./examples/genesys-forwarder -broker amqp://guest:guest@127.0.0.1:5672/ -api http://127.0.0.1:7070/genesys
//
// Messages are JSON with an "id" (sent as the Idempotency-Key). With NATS they
// are read from the stream INBOUND, subject <prefix>.<region>, by a durable
// pull consumer per region; dead letters go to <prefix>-dead.<region> (stream
// INBOUND_DEAD). With RabbitMQ they are read from the quorum queue
// <prefix>.<region>, whose dead-letter exchange <prefix>.dlx routes to the queue
// <prefix>.dead; delayed redeliveries wait in <prefix>.<region>.retry. The
// forwarder declares what is missing.
//
// With -api pointing at the breakerbox sidecar (http://127.0.0.1:7070/genesys),
// a message for eu-west-1 goes to /genesys/eu-west-1/api/v2/conversations/...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/breakerbox/breakerbox/breakerprom"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/amqpgate"
	"github.com/breakerbox/breakerbox/queuegate/natsgate"
	"github.com/breakerbox/breakerbox/queuegate/queuegateprom"
)

// Config is the forwarder's configuration, from flags.
type Config struct {
	Broker      string        // nats://… or amqp://…
	API         string        // base URL; a region's messages go to API/<region>/api/v2/…
	Regions     []string      // one consumer and one circuit each
	Prefix      string        // subject / queue prefix
	Concurrency int           // messages handled at once, per region
	OpenTimeout time.Duration // T10: 60s
	Metrics     string        // listen address for /metrics; "" for none
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, cfg, logger); err != nil {
		logger.Error("genesys-forwarder", slog.Any("error", err))
		os.Exit(1)
	}
}

func parseFlags(args []string, out io.Writer) (Config, error) {
	fs := flag.NewFlagSet("genesys-forwarder", flag.ContinueOnError)
	fs.SetOutput(out)
	var cfg Config
	var regions string
	fs.StringVar(&cfg.Broker, "broker", "nats://127.0.0.1:4222", "message broker: nats://host:port (JetStream) or amqp://user:pass@host:port/vhost (RabbitMQ)")
	fs.StringVar(&cfg.API, "api", "http://127.0.0.1:7070/genesys", "base URL of the Genesys-style API; a region's messages go to <api>/<region>"+inboundPath)
	fs.StringVar(&regions, "regions", "us-east-1,eu-west-1,ap-southeast-2", "comma-separated Genesys regions, one consumer and one circuit each")
	fs.StringVar(&cfg.Prefix, "prefix", "inbound", "subject (NATS) or queue (RabbitMQ) prefix: messages for a region come from <prefix>.<region>")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "messages handled at once per region")
	fs.DurationVar(&cfg.OpenTimeout, "open-timeout", 60*time.Second, "how long a region's circuit stays open before a probe (T10: 60s)")
	fs.StringVar(&cfg.Metrics, "metrics", "", "listen address for Prometheus /metrics, e.g. 127.0.0.1:9464; empty for none")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for _, r := range strings.Split(regions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Regions = append(cfg.Regions, r)
		}
	}
	err := cfg.validate()
	if err != nil {
		fmt.Fprintln(out, err)
	}
	return cfg, err
}

func (c Config) validate() error {
	u, err := url.Parse(c.Broker)
	switch {
	case err != nil || (u.Scheme != "nats" && u.Scheme != "amqp" && u.Scheme != "amqps"):
		return fmt.Errorf("-broker %q: want nats://host:port or amqp://user:pass@host:port/", c.Broker)
	case len(c.Regions) == 0:
		return errors.New("-regions is empty: name at least one region, e.g. eu-west-1")
	case c.Concurrency < 1:
		return fmt.Errorf("-concurrency %d: must be ≥ 1", c.Concurrency)
	case c.OpenTimeout <= 0:
		return fmt.Errorf("-open-timeout %v: must be > 0", c.OpenTimeout)
	}
	if u, err := url.Parse(c.API); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-api %q: want an http(s) URL, e.g. http://127.0.0.1:7070/genesys", c.API)
	}
	return nil
}

// run forwards until ctx is done.
func run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	fwd, err := NewForwarder(cfg.API, cfg.OpenTimeout, logger)
	if err != nil {
		return err
	}
	gates := make(map[string]*queuegate.Gate, len(cfg.Regions))
	var all []*queuegate.Gate
	for _, r := range cfg.Regions {
		g, err := queuegate.New(queuegate.Config{Registry: fwd.Registry(), Key: "genesys/" + r, Logger: logger})
		if err != nil {
			return err
		}
		gates[r] = g
		all = append(all, g)
	}
	if cfg.Metrics != "" {
		stopMetrics, err := serveMetrics(cfg.Metrics, fwd, all, logger)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	// handle forwards one message body for region.
	handle := func(ctx context.Context, region string, body []byte) error {
		var m struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return queuegate.MarkDeadLetter(fmt.Errorf("message is not JSON: %w", err))
		}
		return fwd.Forward(ctx, region, m.ID, body)
	}
	if strings.HasPrefix(cfg.Broker, "nats:") {
		return runNATS(ctx, cfg, gates, handle, logger)
	}
	return runAMQP(ctx, cfg, gates, handle, logger)
}

type handler func(ctx context.Context, region string, body []byte) error

func runNATS(ctx context.Context, cfg Config, gates map[string]*queuegate.Gate, handle handler, logger *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx) // one consumer's failure stops them all
	defer cancel()
	nc, err := nats.Connect(cfg.Broker, nats.Name("genesys-forwarder"))
	if err != nil {
		return fmt.Errorf("-broker %s: %w", cfg.Broker, err)
	}
	defer nc.Drain()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "INBOUND", Subjects: []string{cfg.Prefix + ".>"}}); err != nil {
		return fmt.Errorf("stream INBOUND: %w", err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "INBOUND_DEAD", Subjects: []string{cfg.Prefix + "-dead.>"}}); err != nil {
		return fmt.Errorf("stream INBOUND_DEAD: %w", err)
	}
	errs := make(chan error, len(cfg.Regions))
	for _, region := range cfg.Regions {
		cons, err := js.CreateOrUpdateConsumer(ctx, "INBOUND", jetstream.ConsumerConfig{
			Durable:       "genesys-forwarder-" + region,
			FilterSubject: cfg.Prefix + "." + region,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       time.Minute,
		})
		if err != nil {
			return fmt.Errorf("consumer for %s: %w", region, err)
		}
		c, err := natsgate.New(natsgate.Config{
			Consumer: cons, Gate: gates[region], Concurrency: cfg.Concurrency, Logger: logger,
			Handler: func(ctx context.Context, msg jetstream.Msg) error {
				return handle(ctx, region, msg.Data())
			},
			DeadLetter: natsgate.DeadLetterTo(js, cfg.Prefix+"-dead."+region),
		})
		if err != nil {
			return err
		}
		go func() { errs <- c.Run(ctx) }()
	}
	logger.Info("forwarding", slog.String("broker", cfg.Broker), slog.String("api", cfg.API), slog.Any("regions", cfg.Regions))
	return wait(errs, len(cfg.Regions), cancel)
}

func runAMQP(ctx context.Context, cfg Config, gates map[string]*queuegate.Gate, handle handler, logger *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx) // one consumer's failure stops them all
	defer cancel()
	conn, err := amqp.Dial(cfg.Broker)
	if err != nil {
		return fmt.Errorf("-broker: %w", err)
	}
	defer conn.Close()
	if err := declareAMQP(conn, cfg); err != nil {
		return err
	}
	errs := make(chan error, len(cfg.Regions))
	for _, region := range cfg.Regions {
		c, err := amqpgate.New(amqpgate.Config{
			Conn: conn, Queue: cfg.Prefix + "." + region, Gate: gates[region], Concurrency: cfg.Concurrency, Logger: logger,
			Handler: func(ctx context.Context, d amqp.Delivery) error {
				return handle(ctx, region, d.Body)
			},
		})
		if err != nil {
			return err
		}
		go func() { errs <- c.Run(ctx) }()
	}
	logger.Info("forwarding", slog.String("broker", "amqp"), slog.String("api", cfg.API), slog.Any("regions", cfg.Regions))
	return wait(errs, len(cfg.Regions), cancel)
}

// declareAMQP declares, if missing, the dead-letter exchange and queue and,
// per region, the quorum work queue and its retry queue.
func declareAMQP(conn *amqp.Connection, cfg Config) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	dlx, dead := cfg.Prefix+".dlx", cfg.Prefix+".dead"
	if err := ch.ExchangeDeclare(dlx, "fanout", true, false, false, false, nil); err != nil {
		return fmt.Errorf("exchange %s: %w", dlx, err)
	}
	if _, err := ch.QueueDeclare(dead, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return fmt.Errorf("queue %s: %w", dead, err)
	}
	if err := ch.QueueBind(dead, "", dlx, false, nil); err != nil {
		return fmt.Errorf("binding %s: %w", dead, err)
	}
	for _, r := range cfg.Regions {
		q := cfg.Prefix + "." + r
		if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{
			"x-queue-type": "quorum", "x-dead-letter-exchange": dlx,
		}); err != nil {
			return fmt.Errorf("queue %s: %w", q, err)
		}
		if _, err := amqpgate.DeclareRetryQueue(ch, q); err != nil {
			return err
		}
	}
	return nil
}

// wait waits for the n consumers to stop and returns the first one's error;
// the first error stops the others.
func wait(errs <-chan error, n int, stopAll func()) error {
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
			stopAll()
		}
	}
	return first
}

func serveMetrics(addr string, fwd *Forwarder, gates []*queuegate.Gate, logger *slog.Logger) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(breakerprom.NewCollector(fwd.Registry()), queuegateprom.NewCollector(gates...))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics", slog.Any("error", err))
		}
	}()
	return func() { srv.Close() }, nil
}
