package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerbox/breakerbox/queuegate/brokertest"
)

// syncBuffer is a log sink safe for the forwarder's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The forwarder end to end on a real nats-server: eu-west-1's API is down for
// longer than the open timeout, then recovers; one message is refused (400).
// Every good message reaches the API exactly once, the refused one is
// dead-lettered, and eu-west-1's consumer paused and resumed.
func TestForwarderWaitsOutARegionOutage(t *testing.T) {
	url := brokertest.NATS(t)
	var down atomic.Bool
	down.Store(true)
	var mu sync.Mutex
	got := map[string]int{}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		region, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/genesys/"), "/")
		id := r.Header.Get("Idempotency-Key")
		switch {
		case "/"+rest != inboundPath || r.Method != http.MethodPost:
			http.Error(w, "not found", http.StatusNotFound)
		case strings.HasPrefix(id, "bad"):
			http.Error(w, "unknown integration", http.StatusBadRequest)
		case region == "eu-west-1" && down.Load():
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		default:
			mu.Lock()
			got[id]++
			mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	defer api.Close()

	cfg, err := parseFlags([]string{"-broker", url, "-api", api.URL + "/genesys", "-open-timeout", "200ms", "-concurrency", "4"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, cfg, slog.New(slog.NewTextHandler(logs, nil))) }()

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	for ctx.Err() == nil { // the forwarder creates the stream
		if _, err := js.Stream(ctx, "INBOUND"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var want []string
	for _, region := range cfg.Regions {
		for i := range 40 {
			id := fmt.Sprintf("%s-%02d", region, i)
			want = append(want, id)
			if _, err := js.Publish(ctx, "inbound."+region, fmt.Appendf(nil, `{"id": %q, "text": "hello"}`, id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := js.Publish(ctx, "inbound.us-east-1", []byte(`{"id": "bad-1"}`)); err != nil {
		t.Fatal(err)
	}

	for !strings.Contains(logs.String(), "queue gate paused") {
		if ctx.Err() != nil {
			t.Fatalf("eu-west-1's gate never paused; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // longer than the open timeout
	down.Store(false)
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	for delivered() < len(want) {
		if ctx.Err() != nil {
			t.Fatalf("%d of %d messages delivered", delivered(), len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
	dead, err := js.Stream(ctx, "INBOUND_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := dead.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d dead letters, want 1 (bad-1)", info.State.Msgs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times, want 1", id, got[id])
		}
	}
	for _, line := range []string{"queue gate paused", "queue gate resumed", "Circuit breaker OPEN for genesys/eu-west-1"} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("logs lack %q", line)
		}
	}
}

func TestFlagErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-broker", "redis://x"}, "-broker \"redis://x\": want nats://"},
		{[]string{"-api", "127.0.0.1:7070"}, "-api \"127.0.0.1:7070\": want an http(s) URL"},
		{[]string{"-regions", " , "}, "-regions is empty"},
		{[]string{"-concurrency", "0"}, "-concurrency 0: must be ≥ 1"},
		{[]string{"-open-timeout", "0s"}, "-open-timeout 0s: must be > 0"},
	} {
		var out bytes.Buffer
		if _, err := parseFlags(tc.args, &out); err == nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: %v, output %q; want %q", tc.args, err, out.String(), tc.want)
		}
	}
}
