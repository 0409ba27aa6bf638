package httpbreaker_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/genesys"
	"github.com/breakerbox/breakerbox/httpbreaker"
	"github.com/breakerbox/breakerbox/retry"
)

// quiet drops the breakers' transition logs, which would go to stderr.
var quiet = slog.New(slog.DiscardHandler)

func ExampleTransport() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer upstream.Close()

	registry, _ := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{FailureThreshold: 2, OpenTimeout: time.Minute, Logger: quiet},
	})
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: registry}}

	for range 3 {
		resp, err := client.Get(upstream.URL)
		if errors.Is(err, breaker.ErrOpen) {
			wait, _ := breaker.RetryAfter(err)
			fmt.Println("rejected without a request; probe in", wait.Round(time.Second))
			continue
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
	}
	// Output:
	// 503 Service Unavailable
	// 503 Service Unavailable
	// rejected without a request; probe in 1m0s
}

// T10: one breaker per Genesys Cloud region, with the region profile.
func Example_genesysRegions() {
	registry, _ := breaker.NewRegistry(breaker.RegistryConfig{
		Default: breaker.Config{Logger: quiet},
		Profiles: map[string]breaker.Config{
			"genesys": {FailureThreshold: 10, OpenTimeout: 60 * time.Second, HalfOpenSuccesses: 3},
		},
	})
	client := &http.Client{Transport: &httpbreaker.Transport{Registry: registry, Key: genesys.Key}}
	_ = client // client.Post("https://api.mypurecloud.ie/api/v2/conversations/messages/...", ...)

	req, _ := http.NewRequest(http.MethodGet, "https://api.mypurecloud.ie/api/v2/users/me", nil)
	key := genesys.Key(req)
	c := registry.ConfigFor(key)
	fmt.Println(key, c.FailureThreshold, c.OpenTimeout, c.HalfOpenSuccesses)
	// Output: genesys/eu-west-1 10 1m0s 3
}

// Retries inside, breaker outside: the breaker counts the retried request
// once, by its final answer.
func ExampleTransport_retry() {
	var n atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			http.Error(w, "overloaded", http.StatusBadGateway)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer upstream.Close()

	registry, _ := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Logger: quiet}})
	client := &http.Client{Transport: &httpbreaker.Transport{
		Registry: registry,
		Retry:    &retry.Policy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
	}}
	resp, err := client.Get(upstream.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := registry.All()[0].Snapshot()
	fmt.Printf("%s after %d requests; failures counted: %d\n", body, n.Load(), s.Failures)
	// Output: ok after 3 requests; failures counted: 0
}
