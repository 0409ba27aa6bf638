package breaker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

var errBoom = errors.New("boom")

// harness is a breaker on a manual clock that records its events and logs.
type harness struct {
	t   *testing.T
	clk *breakertest.Clock
	b   *breaker.Breaker
	log *bytes.Buffer

	mu     sync.Mutex
	events []breaker.Transition
	calls  int // how many times a protected function actually ran
}

func newHarness(t *testing.T, cfg breaker.Config) *harness {
	t.Helper()
	h := &harness{t: t, clk: breakertest.NewClock(), log: new(bytes.Buffer)}
	if cfg.Name == "" {
		cfg.Name = "svc"
	}
	cfg.Clock = h.clk
	cfg.Logger = slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.OnTransition = func(tr breaker.Transition) {
		h.mu.Lock()
		h.events = append(h.events, tr)
		h.mu.Unlock()
	}
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.b = b
	return h
}

// do makes one call whose function returns err, and returns Do's error.
func (h *harness) do(err error) error {
	return h.b.Do(context.Background(), func(context.Context) error {
		h.calls++
		return err
	})
}

func (h *harness) fail(n int) {
	h.t.Helper()
	for range n {
		if err := h.do(errBoom); !errors.Is(err, errBoom) {
			h.t.Fatalf("failing call: got %v, want the call to run and return errBoom", err)
		}
	}
}

func (h *harness) succeed(n int) {
	h.t.Helper()
	for range n {
		if err := h.do(nil); err != nil {
			h.t.Fatalf("succeeding call: got %v, want nil", err)
		}
	}
}

func (h *harness) wantState(want breaker.State) {
	h.t.Helper()
	if got := h.b.State(); got != want {
		h.t.Fatalf("state = %v, want %v", got, want)
	}
}

// open drives a CLOSED breaker to OPEN with consecutive failures.
func (h *harness) open() {
	h.t.Helper()
	h.fail(h.b.Config().FailureThreshold)
	h.wantState(breaker.Open)
}

// halfOpen drives a CLOSED breaker to HALF_OPEN.
func (h *harness) halfOpen() {
	h.t.Helper()
	h.open()
	h.clk.Advance(h.b.Config().OpenTimeout)
	h.wantState(breaker.HalfOpen)
}

func (h *harness) wantRejected(err error) *breaker.OpenError {
	h.t.Helper()
	if !errors.Is(err, breaker.ErrOpen) {
		h.t.Fatalf("got %v, want a rejection (errors.Is ErrOpen)", err)
	}
	var oe *breaker.OpenError
	if !errors.As(err, &oe) {
		h.t.Fatalf("rejection %T does not unwrap to *OpenError", err)
	}
	return oe
}

func (h *harness) transitions() []breaker.Transition {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]breaker.Transition(nil), h.events...)
}

func (h *harness) lastTransition() breaker.Transition {
	h.t.Helper()
	ev := h.transitions()
	if len(ev) == 0 {
		h.t.Fatal("no transition recorded")
	}
	return ev[len(ev)-1]
}

const minute = time.Minute

var discard = slog.New(slog.DiscardHandler)

func newClock() *breakertest.Clock { return breakertest.NewClock() }

// get is Registry.Get for a registry with no Configure hook, where it
// cannot fail.
func get(t testing.TB, r *breaker.Registry, key string) *breaker.Breaker {
	t.Helper()
	b, err := r.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return b
}
