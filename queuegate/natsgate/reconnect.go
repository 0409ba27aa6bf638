package natsgate

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
)

// Reconnection backoff of ReconnectOptions: the first attempt after
// ReconnectMin, each next one twice as late up to ReconnectMax, each with up
// to half of it again as jitter, so that a fleet of consumers does not
// reconnect to a restarted server in step.
const (
	ReconnectMin = 100 * time.Millisecond
	ReconnectMax = 5 * time.Second
)

// ReconnectOptions returns the nats.Connect options a Consumer's connection
// needs to outlive its server: reconnect forever (nats.go gives up after 60
// attempts by default, about two minutes, and then closes the connection for
// good), with capped exponential backoff and jitter (ReconnectDelay), and
// log the outage once: a warning when the connection drops, an info line
// when it is back, and nats.go's asynchronous errors through logger rather
// than to stderr.
//
//	nc, err := nats.Connect(url, natsgate.ReconnectOptions(logger)...)
//
// Append more options after these to override them (a later option wins).
// logger nil means slog.Default().
func ReconnectOptions(logger *slog.Logger) []nats.Option {
	if logger == nil {
		logger = slog.Default()
	}
	var down time.Time // touched only by nats.go's callback goroutine, one at a time
	return []nats.Option{
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(ReconnectDelay),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // closed by its owner, not lost
			}
			down = time.Now()
			logger.Warn("natsgate: connection to the NATS server lost; reconnecting until it is back",
				slog.String("conn", nc.Opts.Name), slog.Any("error", err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("natsgate: reconnected to the NATS server",
				slog.String("conn", nc.Opts.Name), slog.String("server", nc.ConnectedUrlRedacted()), slog.Duration("down_for", time.Since(down).Round(time.Millisecond)))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				logger.Error("natsgate: connection to the NATS server closed for good", slog.String("conn", nc.Opts.Name), slog.Any("error", err))
			}
		}),
		// nats.go's default prints asynchronous errors to stderr. The ones
		// of a connection that is down (a write that met the closed socket)
		// belong to the outage, logged once above.
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			level := slog.LevelWarn
			if !nc.IsConnected() {
				level = slog.LevelDebug
			}
			attrs := []slog.Attr{slog.String("conn", nc.Opts.Name), slog.Any("error", err)}
			if sub != nil {
				attrs = append(attrs, slog.String("subject", sub.Subject))
			}
			logger.LogAttrs(context.Background(), level, "natsgate: NATS connection error", attrs...)
		}),
	}
}

// ReconnectDelay is the wait before reconnection attempt n (1 for the
// first): ReconnectMin doubled n-1 times, at most ReconnectMax, plus up to
// half of that as jitter.
func ReconnectDelay(n int) time.Duration {
	d := ReconnectMax
	if n <= 1 {
		d = ReconnectMin
	} else if n < 16 {
		d = min(ReconnectMin<<(n-1), ReconnectMax)
	}
	return d + rand.N(d/2+1)
}
