package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// running is breakerbox's two listeners served by runServers, as serve
// does, on free loopback ports.
type running struct {
	srv          *proxy.Server
	proxy, admin string
	logs         *syncbuf.Buffer
}

func startServers(t *testing.T, yaml string) *running {
	t.Helper()
	return startServersOn(t, config.EngineNetHTTP, yaml)
}

// startServersOn is startServers with the proxy listener on engine.
func startServersOn(t *testing.T, engine, yaml string) *running {
	t.Helper()
	yaml = fmt.Sprintf("listen_engine: %s\n%s", engine, yaml)
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := &running{logs: new(syncbuf.Buffer)}
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	r.srv, err = proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	al, _ := net.Listen("tcp", "127.0.0.1:0")
	r.proxy, r.admin = pl.Addr().String(), al.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServers(ctx, r.srv, pl, al, nil, "", 5*time.Second, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runServers: %v", err)
		}
	})
	return r
}

// get makes one request on a new connection.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	code, body, err := fetch(url)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// fetch is get for a goroutine other than the test's.
func fetch(url string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func okUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream ok") }))
	t.Cleanup(up.Close)
	return up
}

// closedByServer reports, for each connection, whether the server closed
// it (within wait).
func closedByServer(conns []net.Conn, wait time.Duration) int {
	var n atomic.Int32
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(wait))
			if _, err := io.Copy(io.Discard, c); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
				n.Add(1) // EOF or reset: the server hung up
			}
		}()
	}
	wg.Wait()
	return int(n.Load())
}

// TestConnectionCapKeepsBothListenersAnswering holds ten times the cap of
// connections open on each listener, half of them idle keep-alives after a
// request, half never sending one: a new proxy request and the admin API
// still answer, and the held connections beyond the cap were closed.
func TestConnectionCapKeepsBothListenersAnswering(t *testing.T) {
	for _, engine := range []string{config.EngineNetHTTP, config.EngineFastHTTP} {
		t.Run(engine, func(t *testing.T) {
			const max = 4
			up := okUpstream(t)
			r := startServersOn(t, engine, fmt.Sprintf("limits: {proxy: {max_connections: %d}, admin: {max_connections: %d}}\nservices: [{name: svc, upstream: %q}]", max, max, up.URL))
			var held []net.Conn
			for _, addr := range []string{r.proxy, r.admin} {
				for i := range 10 * max {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					held = append(held, c)
					if i%2 == 0 {
						continue // never sends a request
					}
					path := "/svc/x"
					if addr == r.admin {
						path = "/healthz"
					}
					fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path)
					resp, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						// Evicted already by the next connections: fine, it was idle.
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
			if code, body := get(t, "http://"+r.proxy+"/svc/x"); code != 200 || body != "upstream ok" {
				t.Fatalf("new proxy request with %d connections held: %d %q", len(held), code, body)
			}
			if code, body := get(t, "http://"+r.admin+"/api/circuits"); code != 200 || !strings.Contains(body, `"svc"`) {
				t.Fatalf("admin API with %d connections held: %d %q", len(held), code, body)
			}
			if n := closedByServer(held, 2*time.Second); n < len(held)-2*max {
				t.Fatalf("%d of %d held connections closed, want at least %d (the cap is %d per listener)", n, len(held), len(held)-2*max, max)
			}
		})
	}
}

// TestConnectionCapWaitsWhileEveryConnectionIsBusy: at the cap with every
// connection mid-request, a new connection waits (it is not refused, and
// no busy request is cut) and is served once one ends; the admin listener,
// with its own cap, answers meanwhile.
func TestConnectionCapWaitsWhileEveryConnectionIsBusy(t *testing.T) {
	for _, engine := range []string{config.EngineNetHTTP, config.EngineFastHTTP} {
		t.Run(engine, func(t *testing.T) {
			release := make(chan struct{})
			var hits atomic.Int32
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				<-release
				fmt.Fprint(w, "done")
			}))
			defer up.Close()
			r := startServersOn(t, engine, fmt.Sprintf("limits: {proxy: {max_connections: 2}}\nservices: [{name: svc, upstream: %q}]", up.URL))
			results := make(chan string, 3)
			for range 3 {
				go func() {
					code, body, err := fetch("http://" + r.proxy + "/svc/x")
					results <- fmt.Sprint(code, body, err)
				}()
			}
			waitFor(t, func() bool { return hits.Load() == 2 })
			if code, _ := get(t, "http://"+r.admin+"/api/circuits"); code != 200 {
				t.Fatalf("admin API while the proxy is at its cap: %d", code)
			}
			time.Sleep(100 * time.Millisecond) // the third would arrive now if the cap let it through
			if h := hits.Load(); h != 2 {
				t.Fatalf("%d requests reached the upstream with a cap of 2 busy connections", h)
			}
			close(release)
			for range 3 {
				if got := <-results; got != "200done<nil>" {
					t.Fatalf("request: %s", got)
				}
			}
		})
	}
}

func TestSlowRequestHeadersAreCut(t *testing.T) {
	for _, engine := range []string{config.EngineNetHTTP, config.EngineFastHTTP} {
		t.Run(engine, func(t *testing.T) {
			up := okUpstream(t)
			r := startServersOn(t, engine, fmt.Sprintf("limits: {proxy: {read_header_timeout: 100ms}, admin: {read_header_timeout: 100ms}}\nservices: [{name: svc, upstream: %q}]", up.URL))
			for _, addr := range []string{r.proxy, r.admin} {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				fmt.Fprint(c, "GET /svc/x HTTP/1.1\r\nHost: 127.0.0.1\r\n") // and never the blank line
				if closedByServer([]net.Conn{c}, 10*time.Second) != 1 {
					t.Fatalf("%s kept a connection whose headers never ended", addr)
				}
			}
		})
	}
}

// TestLongStreamsOutliveTheListenerTimeouts: an event stream, and a proxied
// response of a service whose timeout is longer than the listener's read
// and write timeouts, both run well past those timeouts.
func TestLongStreamsOutliveTheListenerTimeouts(t *testing.T) {
	for _, engine := range []string{config.EngineNetHTTP, config.EngineFastHTTP} {
		t.Run(engine, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for i := range 6 {
					fmt.Fprintf(w, "chunk %d\n", i)
					w.(http.Flusher).Flush()
					time.Sleep(100 * time.Millisecond)
				}
			}))
			defer up.Close()
			lim := "{read_header_timeout: 50ms, read_timeout: 150ms, write_timeout: 150ms, idle_timeout: 150ms}"
			r := startServersOn(t, engine, fmt.Sprintf("limits: {proxy: %s, admin: %s}\nservices: [{name: svc, upstream: %q, timeout: 10s}]", lim, lim, up.URL))

			resp, err := http.Get("http://" + r.admin + "/api/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			events := bufio.NewReader(resp.Body)
			if line, _ := events.ReadString('\n'); line != "retry: 1000\n" {
				t.Fatalf("stream starts with %q", line)
			}

			code, body := get(t, "http://"+r.proxy+"/svc/stream") // 600 ms: four write timeouts
			if code != 200 || strings.Count(body, "chunk") != 6 {
				t.Fatalf("streamed response cut: %d %q", code, body)
			}

			r.srv.Registry().MustGet("svc").ForceOpen() // an event, long after the admin timeouts
			for {
				line, err := events.ReadString('\n')
				if err != nil {
					t.Fatalf("event stream ended: %v", err)
				}
				if strings.HasPrefix(line, "event: transition") {
					break
				}
			}
		})
	}
}

func TestReloadRefusesWhatNeedsARestart(t *testing.T) {
	base := "services: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"
	old, _ := config.Parse("t.yaml", []byte(base))
	for _, tt := range []struct {
		yaml, want string
	}{
		{"listen: 127.0.0.1:7000\n" + base, "listen, listen_engine and admin cannot change"},
		{"listen_engine: fasthttp\n" + base, "listen, listen_engine and admin cannot change"},
		{"limits: {proxy: {max_connections: 7}}\n" + base, "limits (other than limits.admin.max_event_streams) cannot change"},
		{"limits: {admin: {max_event_streams: 7}}\n" + base, ""},
		{"admin_hosts: [box]\n" + base, ""},
	} {
		cfg, err := config.Parse("t.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatal(err)
		}
		err = restartOnly(old, cfg)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

func TestReloadNeverLogsTheRedisPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("services: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"), 0o644)
	cfg, _ := config.Load(path)
	srv, _ := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	for _, state := range []string{"reddis://:hunter2@127.0.0.1:6379/0", "redis://127.0.0.1:6379/0?password=hunter2", "redis://:hunter2@127.0.0.1:6379/0"} {
		os.WriteFile(path, []byte("state: '"+state+"'\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"), 0o644)
		var logs bytes.Buffer
		reload(srv, path, slog.New(slog.NewTextHandler(&logs, nil)))
		if !strings.Contains(logs.String(), "config rejected") || strings.Contains(logs.String(), "hunter2") {
			t.Errorf("%s: %s", state, logs.String())
		}
	}
}

func TestBannerSuggestsAConfiguredService(t *testing.T) {
	cfg, _ := config.Parse("t.yaml", []byte("admin: 0.0.0.0:7071\nservices: [{name: payments, upstream: 'http://127.0.0.1:9'}]\n"))
	srv, _ := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	var out bytes.Buffer
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7070}
	logBanner(slog.New(slog.NewTextHandler(&out, nil)), cfg, "t.yaml", srv, addr, addr, nil, nil)
	if !strings.Contains(out.String(), "example=http://127.0.0.1:7070/payments/...") || strings.Contains(out.String(), "cloudflare") ||
		!strings.Contains(out.String(), `level=INFO msg="breakerbox started" circuits=1 config=t.yaml`) {
		t.Fatalf("banner:\n%s", out.String())
	}
}

func TestConnectionCapsBeyondTheFileLimitWarn(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 400_000 {
		t.Skipf("file limit %d: the caps cannot exceed it", rl.Cur)
	}
	cfg, _ := config.Parse("t.yaml", []byte("limits: {proxy: {max_connections: 1000000}}\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"))
	if w := fdWarning(cfg.Limits); !strings.Contains(w, "ulimit -n") {
		t.Fatalf("warning %q", w)
	}
	if w := fdWarning(config.DefaultLimits); rl.Cur >= 2*4096+256+64 && w != "" {
		t.Fatalf("default limits warn: %q", w)
	}
}

func TestCheckConfigReportsEveryProblemAndWarning(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:7070\nadmin: localhost:7070\nservices:\n  - name: a\n    upstream: http://127.0.0.1:9\n    failure_treshold: 3\n"), 0o644)
	err := run(context.Background(), []string{"check-config", bad}, io.Discard, io.Discard)
	if err == nil || exitCode(err) != 1 ||
		!strings.Contains(err.Error(), bad+`:2: admin: "localhost:7070" is also the proxy's listen address`) ||
		!strings.Contains(err.Error(), bad+`:6: unknown key "failure_treshold" in services[0]; did you mean "failure_threshold"?`) {
		t.Fatalf("check-config: %v", err)
	}
	if err := run(context.Background(), []string{"check-config", "/dev/zero"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Fatalf("check-config /dev/zero: %v", err)
	}
	open := filepath.Join(dir, "open.yaml")
	os.WriteFile(open, []byte("admin: 0.0.0.0:7071\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"), 0o644)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config", open}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), open+": warning: admin: 0.0.0.0:7071 is reachable beyond this host") || !strings.Contains(out.String(), ": ok:") {
		t.Fatalf("output %q", out.String())
	}
}

// TestCheckConfigBindsListenBesideAdmin: a host name that validation does
// not resolve, naming the listen socket, is caught by binding both.
func TestCheckConfigBindsListenBesideAdmin(t *testing.T) {
	name, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(name, "0")) // the address Listen binds for name
	if err != nil {
		t.Skipf("%s does not resolve: %v", name, err)
	}
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("listen: %s\nadmin: %s\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n",
		net.JoinHostPort(addr.IP.String(), port), net.JoinHostPort(name, port))), 0o644)
	err = run(context.Background(), []string{"check-config", path}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is the same socket as listen") {
		t.Fatalf("check-config: %v", err)
	}
}
