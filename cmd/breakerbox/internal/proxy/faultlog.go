package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// upstreamFaultEvery bounds the lines about a failing upstream: one per
// circuit and kind of fault in this period, saying how many went unlogged.
const upstreamFaultEvery = 10 * time.Second

// upstreamLog logs, at WARN and rate-limited, the failures the breaker
// counts against an upstream: timeouts, refused or reset connections and
// 5xx answers. An outage fails every request; a line per request would
// bury the ERROR that says the circuit opened. Time is the breakers'
// clock, so tests drive it.
type upstreamLog struct {
	log   *slog.Logger
	clock breaker.Clock

	mu     sync.Mutex
	bursts map[upstreamFault]*burst
}

type upstreamFault struct {
	circuit, kind string
}

// burst paces one kind of log line: at most one per period, each saying
// how many were left unlogged since the previous one. Its user holds a lock.
type burst struct {
	next     time.Time
	unlogged int
}

// allow reports whether a line may be written at now, and how many went
// unlogged before it; if so, the next one may come every later.
func (b *burst) allow(now time.Time, every time.Duration) (unlogged int, ok bool) {
	if now.Before(b.next) {
		b.unlogged++
		return 0, false
	}
	b.next, unlogged, b.unlogged = now.Add(every), b.unlogged, 0
	return unlogged, true
}

func newUpstreamLog(log *slog.Logger, clock breaker.Clock) *upstreamLog {
	if clock == nil {
		clock = breaker.SystemClock{}
	}
	return &upstreamLog{log: log, clock: clock, bursts: map[upstreamFault]*burst{}}
}

// fault logs one failure of rt's upstream of the given kind ("upstream
// timeout", "upstream unreachable", "upstream answered 5xx") unless one of
// the kind was logged for the circuit less than upstreamFaultEvery ago.
func (l *upstreamLog) fault(rt *route, kind string, detail slog.Attr) {
	if !l.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	now := l.clock.Now()
	k := upstreamFault{rt.circuit, kind}
	l.mu.Lock()
	b := l.bursts[k]
	if b == nil {
		b = &burst{}
		l.bursts[k] = b
	}
	unlogged, ok := b.allow(now, upstreamFaultEvery)
	l.mu.Unlock()
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("circuit", rt.circuit), slog.String("service", rt.service)}
	if rt.region != "" {
		attrs = append(attrs, slog.String("region", rt.region))
	}
	attrs = append(attrs, detail, slog.Int("unlogged_before", unlogged), slog.Duration("next_log_in", upstreamFaultEvery))
	l.log.LogAttrs(context.Background(), slog.LevelWarn, kind, attrs...)
}
