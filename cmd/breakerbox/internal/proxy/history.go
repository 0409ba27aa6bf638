package proxy

import (
	"sync"

	"github.com/breakerbox/breakerbox/breaker"
)

// history keeps the recent transitions of all circuits, newest last, and
// fans each new one out to live subscribers (the dashboard's event stream).
type history struct {
	mu   sync.Mutex
	ring []breaker.Transition
	max  int
	subs map[chan breaker.Transition]struct{}
}

func newHistory(max int) *history {
	return &history{max: max, subs: map[chan breaker.Transition]struct{}{}}
}

func (h *history) add(t breaker.Transition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring = append(h.ring, t)
	if len(h.ring) > h.max {
		h.ring = append(h.ring[:0], h.ring[len(h.ring)-h.max:]...)
	}
	for c := range h.subs {
		select {
		case c <- t:
		default: // a slow subscriber misses events; it re-reads the API on reconnect
		}
	}
}

// recent returns up to n transitions, newest first.
func (h *history) recent(n int) []breaker.Transition {
	h.mu.Lock()
	defer h.mu.Unlock()
	n = min(n, len(h.ring))
	out := make([]breaker.Transition, 0, n)
	for i := len(h.ring) - 1; i >= len(h.ring)-n; i-- {
		out = append(out, h.ring[i])
	}
	return out
}

// subscribe adds a live subscriber, unless max are subscribed already
// (ok false): each holds a connection and a goroutine.
func (h *history) subscribe(max int) (c <-chan breaker.Transition, cancel func(), ok bool) {
	ch := make(chan breaker.Transition, 64)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= max {
		return nil, nil, false
	}
	h.subs[ch] = struct{}{}
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}, true
}
