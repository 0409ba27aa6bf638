package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// historySize bounds the transitions kept in memory, all circuits together.
const historySize = 1000

// transitionStore keeps transitions beyond the process's life and shares
// them between replicas (RedisHistory). Append must not block: it runs on
// the goroutine whose call caused the transition.
type transitionStore interface {
	Append(t *TransitionJSON)
	// Recent returns up to n transitions, newest first, of one circuit or
	// (circuit "") of all.
	Recent(ctx context.Context, circuit string, n int) ([]*TransitionJSON, error)
}

// history keeps the recent transitions of all circuits, newest last, and
// fans each new one out to live subscribers (the dashboard's event stream).
type history struct {
	mu   sync.Mutex
	ring []*TransitionJSON
	max  int
	subs map[chan *TransitionJSON]struct{}
}

func newHistory(max int) *history {
	return &history{max: max, subs: map[chan *TransitionJSON]struct{}{}}
}

// onTransition records t with its evidence (for an opening: evidenceOf) in
// the history, the circuit's stats and the store.
func (s *Server) onTransition(t breaker.Transition, evidence []Outcome) {
	j := transitionJSON(t)
	j.Replica = s.replica
	j.DecidedBy = s.decidedBy(t)
	r := s.table.Load().circuits[t.Name]
	switch {
	case r == nil:
	case t.To == breaker.Open:
		j.Evidence = evidence
		r.stats.opened.Store(j)
	case t.To == breaker.Closed:
		r.stats.opened.Store(nil) // a later forced open is not explained by an old opening
	}
	s.history.add(j)
	if s.store != nil {
		s.store.Append(j)
	}
}

func (h *history) add(t *TransitionJSON) {
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

// recent returns up to n transitions, newest first, of circuit (or of all
// for "").
func (h *history) recent(circuit string, n int) []*TransitionJSON {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*TransitionJSON, 0, min(n, len(h.ring)))
	for i := len(h.ring) - 1; i >= 0 && len(out) < n; i-- {
		if circuit == "" || h.ring[i].Circuit == circuit {
			out = append(out, h.ring[i])
		}
	}
	return out
}

// subscribe adds a live subscriber, unless max are subscribed already
// (ok false): each holds a connection and a goroutine.
func (h *history) subscribe(max int) (c <-chan *TransitionJSON, cancel func(), ok bool) {
	ch := make(chan *TransitionJSON, 64)
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

// transitions is GET /api/transitions[?circuit=NAME][&limit=N]: newest
// first, from the store when there is one (history across restarts and
// replicas), else from memory.
func (s *Server) transitions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	circuit := q.Get("circuit")
	if circuit != "" && s.table.Load().circuits[circuit] == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("circuit=%q: no such circuit (see /api/circuits)", circuit)})
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > historySize {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("limit=%q: want a number from 1 to %d", v, historySize)})
			return
		}
		limit = n
	}
	if s.store != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		list, err := s.store.Recent(ctx, circuit, limit)
		if err == nil {
			writeCompactJSON(w, http.StatusOK, list)
			return
		}
		s.log.Warn("transition history unavailable from the store, answering from memory", slog.String("error", err.Error()))
		w.Header().Set("Breakerbox-History", "memory")
	}
	writeCompactJSON(w, http.StatusOK, s.history.recent(circuit, limit))
}
