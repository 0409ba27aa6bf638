package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// demoCmd runs a self-contained tour: fake upstreams on loopback (one
// healthy, one down for a while, one region of a per-region service down),
// traffic through the proxy, and the dashboard to watch. It stops by itself.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stdout)
	listen := fs.String("listen", "127.0.0.1:7070", "proxy address (a free port is used if taken)")
	admin := fs.String("admin", "127.0.0.1:7071", "dashboard address (a free port is used if taken)")
	duration := fs.Duration("duration", 75*time.Second, "how long the tour runs")
	outage := fs.Duration("outage", 20*time.Second, "how long the failing upstreams stay down")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *duration <= 0 || *outage <= 0 {
		return usageError{"demo: --duration and --outage must be positive"}
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	start := time.Now()
	down := func() bool { return time.Since(start) < *outage }
	healthy := fakeUpstream(func() int { return http.StatusOK })
	flaky := fakeUpstream(func() int {
		if down() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	regionOutage := *outage * 3 / 2
	regionDown := fakeUpstream(func() int {
		if time.Since(start) < regionOutage {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	for _, u := range []*httptest.Server{healthy, flaky, regionDown} {
		defer u.Close()
	}

	// Open timeouts scale with the outage so a short tour still shows
	// probes failing, then succeeding: 5s for the default 20s outage.
	openTimeout := max(*outage/4, time.Second)

	pl, err := listenOrAny(*listen)
	if err != nil {
		return err
	}
	al, err := listenOrAny(*admin)
	if err != nil {
		pl.Close()
		return err
	}
	cfg, err := config.Parse("demo.yaml", []byte(fmt.Sprintf(`
listen: %s
admin: %s
defaults: {failure_threshold: 5, open_timeout: %s, half_open_successes: 2, timeout: 2s}
services:
  - name: payments
    upstream: %s
  - name: registrar
    upstream: %s
  - name: genesys
    failure_threshold: 10
    half_open_successes: 3
    open_timeout: %s
    per_region:
      us-east-1: %s
      eu-west-1: %s
`, pl.Addr(), al.Addr(), openTimeout, healthy.URL, flaky.URL, 2*openTimeout, healthy.URL, regionDown.URL)))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "breakerbox demo: open the dashboard at http://%s/\n", al.Addr())
	fmt.Fprintf(stdout, "  registrar is down for the first %v; genesys/eu-west-1 for %v; payments and genesys/us-east-1 stay healthy.\n", *outage, regionOutage)
	fmt.Fprintf(stdout, "  Traffic goes through http://%s/ for %v (Ctrl-C stops it sooner). Transitions are logged below.\n\n", pl.Addr(), *duration)

	var wg sync.WaitGroup
	var sent, rejected atomic.Int64
	for _, path := range []string{"/payments/charge", "/registrar/domains", "/genesys/us-east-1/api/v2/messages", "/genesys/eu-west-1/api/v2/messages"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			drive(ctx, "http://"+pl.Addr().String()+path, &sent, &rejected)
		}()
	}
	// The servers stop once the traffic has: a request cut off by the end of
	// the tour is not one the shutdown has to wait for.
	srvCtx, stopServers := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		wg.Wait()
		stopServers()
	}()
	go func() {
		<-ctx.Done()
		if context.Cause(ctx) != context.DeadlineExceeded { // Ctrl-C: stop now
			stopServers()
		}
	}()
	err = runServers(srvCtx, srv, pl, al, nil, "", 2*time.Second, log)
	stopServers()
	wg.Wait()
	fmt.Fprintf(stdout, "\ndemo over: %d requests sent, %d answered at once by an open circuit.\n", sent.Load(), rejected.Load())
	printStatus(stdout, srv.Circuits())
	return err
}

// drive sends a request to url every 100 ms until ctx is done.
func drive(ctx context.Context, url string, sent, rejected *atomic.Int64) {
	client := &http.Client{Timeout: 3 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		sent.Add(1)
		if resp.Header.Get("Breakerbox-State") == "open" {
			rejected.Add(1)
		}
	}
}

func fakeUpstream(status func() int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status())
		fmt.Fprintln(w, `{"ok":true}`)
	}))
}

func listenOrAny(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err == nil {
		return l, nil
	}
	return net.Listen("tcp", "127.0.0.1:0")
}
