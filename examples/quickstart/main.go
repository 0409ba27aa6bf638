// Quickstart: a breaker opening, probing and closing on the real clock.
//
//	go run ./examples/quickstart
//
// A fake service fails for its first two seconds, then recovers. Calls go
// through a breaker every 100 ms; each transition is printed as it happens.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

func main() {
	start := time.Now()
	down := errors.New("503 Service Unavailable")
	service := func(context.Context) error {
		if time.Since(start) < 2*time.Second {
			return down
		}
		return nil
	}

	b, err := breaker.New(breaker.Config{
		Name:              "cloudflare",
		FailureThreshold:  5,
		OpenTimeout:       time.Second,
		HalfOpenSuccesses: 2,
		Logger:            slog.New(slog.NewTextHandler(os.Stdout, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}

	var ran, rejected int
	for i := 0; i < 40; i++ {
		err := b.Do(context.Background(), service)
		at := time.Since(start).Round(100 * time.Millisecond)
		switch {
		case errors.Is(err, breaker.ErrOpen):
			rejected++
			wait, _ := breaker.RetryAfter(err)
			fmt.Printf("%5v  rejected without calling (probe in %v)\n", at, wait.Round(100*time.Millisecond))
		case err != nil:
			ran++
			fmt.Printf("%5v  called: %v\n", at, err)
		default:
			ran++
			fmt.Printf("%5v  called: ok (%v)\n", at, b.State())
		}
		if b.State() == breaker.Closed && time.Since(start) > 3*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("\n%d calls reached the service, %d were rejected at once; final state %v\n", ran, rejected, b.State())
}
