package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/retry"
)

// quiet drops the breakers' transition logs, which would go to stderr.
var quiet = slog.New(slog.DiscardHandler)

// The breaker wraps the whole retried call; retry wraps the attempts. The
// breaker counts one outcome per call, and while it is open no attempt is
// made.
func Example_breakerOutsideRetryInside() {
	b, _ := breaker.New(breaker.Config{Name: "genesys/eu-west-1", Logger: quiet})
	policy := retry.Policy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

	attempts := 0
	send := func(ctx context.Context) error { // one attempt: fails twice, then succeeds
		attempts++
		if attempts < 3 {
			return errors.New("503 Service Unavailable")
		}
		return nil
	}

	err := b.Do(context.Background(), func(ctx context.Context) error {
		return retry.Do(ctx, policy, send)
	})
	fmt.Println("err:", err, "| attempts:", attempts, "| failures counted:", b.Snapshot().Failures)

	b.ForceOpen() // an outage: the breaker now rejects the call before any attempt
	attempts = 0
	err = b.Do(context.Background(), func(ctx context.Context) error {
		return retry.Do(ctx, policy, send)
	})
	fmt.Println("open:", errors.Is(err, breaker.ErrOpen), "| attempts:", attempts)
	// Output:
	// err: <nil> | attempts: 3 | failures counted: 0
	// open: true | attempts: 0
}

// Retrying around a breaker would retry its rejections; retry.Do never does,
// so even in that order an open breaker costs one call, not MaxAttempts.
func ExampleDo_rejectionIsNotRetried() {
	b, _ := breaker.New(breaker.Config{Name: "cloudflare", Logger: quiet})
	b.ForceOpen()

	calls := 0
	err := retry.Do(context.Background(), retry.Policy{MaxAttempts: 5}, func(ctx context.Context) error {
		calls++
		return b.Do(ctx, func(context.Context) error { return nil })
	})
	fmt.Println(errors.Is(err, breaker.ErrOpen), calls)
	// Output: true 1
}

func ExampleTransport() {
	var n atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "hello")
	}))
	defer upstream.Close()

	client := &http.Client{Transport: &retry.Transport{
		Policy: retry.Policy{MaxAttempts: 3, MaxElapsed: 10 * time.Second},
	}}
	resp, err := client.Get(upstream.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body), "after", n.Load(), "requests")
	// Output: 200 hello after 2 requests
}
