package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/redisstate"
)

// openFleet connects the shared state of a redis:// config. An unreachable
// Redis is not an error here: the fleet starts degraded and says so loudly.
func openFleet(ctx context.Context, cfg *config.Config, log *slog.Logger) (*redisstate.Fleet, error) {
	if cfg.State == "memory" {
		return nil, nil
	}
	// go-redis logs every failed dial of its pool; the fleet already says,
	// once, that Redis is unreachable. Keep the client's lines for debugging.
	redis.SetLogger(redisLogger{log})
	f, err := redisstate.New(ctx, redisstate.Options{URL: cfg.State, Quorum: cfg.Quorum, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return f, nil
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
	f, err := openFleet(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil || f == nil {
		return err
	}
	defer f.Close()
	if err := f.Ping(ctx); err != nil {
		return fmt.Errorf("state: %s: %w", cfg.StateRedacted(), err)
	}
	return nil
}
