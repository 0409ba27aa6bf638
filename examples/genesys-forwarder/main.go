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
//
// The forwarder outlives its broker: a restart or a dropped connection is
// logged once and dialled again with backoff (see stayConnected), and the
// messages in hand come back unacked. With -state redis://… forwarders share
// their regions' breakers, so one that starts during an outage joins the
// open circuit. -ackwait sets the NATS consumers' AckWait.
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerprom"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/queuegateprom"
	"github.com/breakerbox/breakerbox/redisstate"
)

// Config is the forwarder's configuration, from flags.
type Config struct {
	Broker      string        // nats://… or amqp://…
	API         string        // base URL; a region's messages go to API/<region>/api/v2/…
	Regions     []string      // one consumer and one circuit each
	Prefix      string        // subject / queue prefix
	Concurrency int           // messages handled at once, per region
	OpenTimeout time.Duration // T10: 60s
	AckWait     time.Duration // NATS: how long a message in hand stays unacked before JetStream redelivers it
	State       string        // redis://… to share the breakers with the other forwarders; "" for none
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
	fs.DurationVar(&cfg.AckWait, "ackwait", 45*time.Second, fmt.Sprintf("NATS: how long JetStream waits for a message's ack before it redelivers it; the messages of a consumer that dies come back after it. Shorter brings them back sooner, but it must exceed %v, the longest a message stays in hand", minAckWait))
	fs.StringVar(&cfg.State, "state", "", "redis://host:port/db to share the regions' breakers with the other forwarders (a forwarder that starts joins an open circuit); empty for breakers of this process alone")
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

// ackTimeout bounds natsgate's wait for the confirmation of an ack.
const ackTimeout = 5 * time.Second

// minAckWait is the longest a message stays in hand: its call with every
// retry (maxHandlerTime), then the wait for the ack's confirmation. A
// shorter AckWait would have JetStream redeliver a message still being
// handled, to this forwarder or another.
var minAckWait = maxHandlerTime + ackTimeout

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
	case c.AckWait <= minAckWait:
		return fmt.Errorf("-ackwait %v: must exceed %v, the longest a message stays in hand (%d attempts of %v, the backoffs between them, the ack), or JetStream would redeliver messages still being handled",
			c.AckWait, minAckWait, retryPolicy.MaxAttempts, retryPolicy.AttemptTimeout)
	}
	if u, err := url.Parse(c.API); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("-api %q: want an http(s) URL, e.g. http://127.0.0.1:7070/genesys", c.API)
	}
	if c.State != "" {
		if u, err := url.Parse(c.State); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			return fmt.Errorf("-state %q: want redis://host:port/db (rediss:// for TLS), or nothing", redact(c.State))
		}
	}
	return nil
}

// redact hides a URL's password.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// run forwards until ctx is done. A broker that goes away is dialled again
// (see stayConnected); run returns early only for a fault that dialling
// again cannot cure, such as a refused login or a queue declared otherwise.
func run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	var shared breaker.Sync // nil, not a nil *Fleet, without -state
	var fleet *redisstate.Fleet
	if cfg.State != "" {
		f, err := redisstate.New(ctx, redisstate.Options{URL: cfg.State, Logger: logger})
		if err != nil {
			return fmt.Errorf("-state: %w", err)
		}
		defer f.Close()
		shared, fleet = f, f
	}
	fwd, err := NewForwarder(cfg.API, cfg.OpenTimeout, shared, logger)
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
	if fleet != nil {
		// Learn which regions the fleet holds open before taking a message:
		// a forwarder that starts (a restart, a scale-up) during an outage
		// then sends nothing to the region that is down.
		jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := fleet.Joined(jctx); err != nil && ctx.Err() == nil {
			logger.Warn("the fleet's state is not known yet (Redis unreachable?); the breakers decide locally until it is", slog.Any("error", err))
		}
		cancel()
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
	session := natsSession
	if !strings.HasPrefix(cfg.Broker, "nats:") {
		session = amqpSession
	}
	return stayConnected(ctx, redact(cfg.Broker), logger, func(ctx context.Context, up func()) error {
		return session(ctx, cfg, gates, handle, logger, up)
	})
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
