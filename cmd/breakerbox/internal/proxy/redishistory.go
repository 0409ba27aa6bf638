package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisHistory keeps the fleet's transitions in one capped Redis stream
// (XADD … MAXLEN ~ max): they survive a restart, and every replica's
// dashboard shows every replica's transitions, each saying which replica
// recorded it (with that replica's evidence). Writes leave the caller's
// goroutine at once: a queue feeds one writer; when Redis is away the
// queue's overflow is dropped and counted, and /api/transitions answers
// from memory.
type RedisHistory struct {
	client  redis.UniversalClient
	key     string
	max     int64
	log     *slog.Logger
	queue   chan *TransitionJSON
	dropped atomic.Uint64
	stop    chan struct{}
	done    sync.WaitGroup
}

// historyKey is the stream under the fleet's key prefix.
const historyKey = "history:transitions"

// NewRedisHistory writes to prefix+"history:transitions", keeping about
// max entries (0 means 10,000). Close stops it.
func NewRedisHistory(client redis.UniversalClient, prefix string, max int64, log *slog.Logger) *RedisHistory {
	if max <= 0 {
		max = 10_000
	}
	if log == nil {
		log = slog.Default()
	}
	h := &RedisHistory{client: client, key: prefix + historyKey, max: max, log: log,
		queue: make(chan *TransitionJSON, 1024), stop: make(chan struct{})}
	h.done.Add(1)
	go h.write()
	return h
}

// Append queues t for the stream; it never blocks.
func (h *RedisHistory) Append(t *TransitionJSON) {
	select {
	case h.queue <- t:
	default:
		h.dropped.Add(1)
	}
}

func (h *RedisHistory) write() {
	defer h.done.Done()
	failing := false
	for {
		var t *TransitionJSON
		select {
		case t = <-h.queue:
		case <-h.stop:
			return
		}
		data, _ := json.Marshal(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := h.client.XAdd(ctx, &redis.XAddArgs{Stream: h.key, MaxLen: h.max, Approx: true,
			Values: []any{"circuit", t.Circuit, "t", data}}).Err()
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			h.log.Warn("transition history: cannot write to Redis; transitions are kept in memory only until it returns",
				slog.String("stream", h.key), slog.String("error", err.Error()))
		case err == nil && failing:
			failing = false
			h.log.Info("transition history: writing to Redis again", slog.String("stream", h.key),
				slog.Uint64("dropped_so_far", h.dropped.Load()))
		}
		if err != nil {
			h.dropped.Add(1)
		}
	}
}

// Recent reads the stream newest first, keeping circuit's transitions (or
// all for ""), up to n; it reads at most the stream's length.
func (h *RedisHistory) Recent(ctx context.Context, circuit string, n int) ([]*TransitionJSON, error) {
	out := make([]*TransitionJSON, 0, n)
	end := "+"
	for read := int64(0); len(out) < n && read < h.max+1000; {
		page, err := h.client.XRevRangeN(ctx, h.key, end, "-", 500).Result()
		if err != nil {
			return nil, fmt.Errorf("transition history: XREVRANGE %s: %w", h.key, err)
		}
		for _, m := range page {
			if c, _ := m.Values["circuit"].(string); circuit != "" && c != circuit {
				continue
			}
			s, _ := m.Values["t"].(string)
			t := new(TransitionJSON)
			if json.Unmarshal([]byte(s), t) != nil {
				continue // not ours: skip rather than fail the whole answer
			}
			if out = append(out, t); len(out) == n {
				break
			}
		}
		if len(page) < 500 {
			break
		}
		read += int64(len(page))
		end = "(" + page[len(page)-1].ID
	}
	return out, nil
}

// Dropped is how many transitions were not written (queue full, Redis
// away).
func (h *RedisHistory) Dropped() uint64 { return h.dropped.Load() }

// Close stops the writer after writing what is queued, for at most 2 s.
func (h *RedisHistory) Close() {
	deadline := time.After(2 * time.Second)
	for len(h.queue) > 0 {
		select {
		case <-deadline:
			close(h.stop)
			h.done.Wait()
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(h.stop)
	h.done.Wait()
}
