package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/redisstate"
)

// openFleet connects the shared state of a redis:// config. An unreachable
// Redis is not an error here: the fleet starts degraded and says so loudly.
// describe, if set, describes the failures the fleet keeps as evidence
// (redisstate.Options.Describe).
func openFleet(ctx context.Context, cfg *config.Config, log *slog.Logger, describe func(circuit string) string) (*redisstate.Fleet, error) {
	if cfg.State == "memory" {
		return nil, nil
	}
	// go-redis logs every failed dial of its pool; the fleet already says,
	// once, that Redis is unreachable. Keep the client's lines for debugging.
	redis.SetLogger(redisLogger{log})
	f, err := redisstate.New(ctx, redisstate.Options{Redis: cfg.Redis.Options(), Timeout: cfg.Redis.Timeout.Duration, Quorum: cfg.Quorum, Logger: slog.New(circuitKey{log.Handler()}), Replica: cfg.Replica, Describe: describe})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return f, nil
}

// circuitKey renames the attribute "breaker" (redisstate's name for a
// breaker) to "circuit", the key of every other line of the sidecar, so one
// query finds a circuit's lines.
type circuitKey struct{ slog.Handler }

func (h circuitKey) Handle(ctx context.Context, r slog.Record) error {
	renamed := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		renamed.AddAttrs(renameBreaker(a))
		return true
	})
	return h.Handler.Handle(ctx, renamed)
}

func (h circuitKey) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = renameBreaker(a)
	}
	return circuitKey{h.Handler.WithAttrs(out)}
}

func (h circuitKey) WithGroup(name string) slog.Handler { return circuitKey{h.Handler.WithGroup(name)} }

func renameBreaker(a slog.Attr) slog.Attr {
	if a.Key == "breaker" {
		a.Key = "circuit"
	}
	return a
}

// shareWithFleet gives the proxy the fleet's Redis for the transition
// history and the fleet-wide totals, and the fleet's replica name and
// health. The returned function closes the client.
func shareWithFleet(cfg *config.Config, f *redisstate.Fleet, opts *proxy.Options) func() {
	client := redis.NewUniversalClient(cfg.Redis.Options())
	opts.Redis = client
	opts.Replica = f.Replica()
	opts.Degraded = func() bool { return f.Stats().Degraded }
	return func() { client.Close() }
}

// failureDescriber describes a circuit's failures for the fleet's evidence
// (proxy.Server.DescribeFailure) once the proxy exists: the fleet is made
// first, since the proxy's breakers join it.
type failureDescriber struct{ srv atomic.Pointer[proxy.Server] }

func (d *failureDescriber) describe(circuit string) string {
	if s := d.srv.Load(); s != nil {
		return s.DescribeFailure(circuit)
	}
	return ""
}

// redisLogger sends the Redis client's own log lines to slog at DEBUG.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// checkFleet makes an unreachable Redis an error, for check-config.
func checkFleet(cfg *config.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	f, err := openFleet(ctx, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil || f == nil {
		return err
	}
	defer f.Close()
	if err := f.Ping(ctx); err != nil {
		return fmt.Errorf("state: %s: %w", cfg.StateRedacted(), err)
	}
	return nil
}
