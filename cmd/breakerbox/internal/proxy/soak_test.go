package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// soakUpstream is an HTTPS upstream (HTTP/1.1, or HTTP/2 too when h2)
// whose answers a client can check byte for byte:
//
//	/dl?n=N&seed=S     N bytes of pattern(S), with a Content-Length
//	/dlc?n=N&seed=S    the same, chunked, flushed every piece
//	/pause?n=N&seed=S&ms=M  the same with a Content-Length, pausing M ms half way
//	/up                reads the body, answers "<length> <sha256>"
//	/sse?n=N&ms=M      N events "data: i", flushed each, M ms apart
//	/proto             the protocol the request came in ("HTTP/1.1", "HTTP/2.0")
func soakUpstream(t *testing.T, h2 bool) *httptest.Server {
	mux := http.NewServeMux()
	download := func(w http.ResponseWriter, r *http.Request, chunked, pause bool) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		seed, _ := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		p := newPattern(seed)
		buf := make([]byte, 7919) // a prime: pieces never align with the proxy's buffers
		paused := !pause
		for sent := 0; sent < n; {
			if !paused && sent == n/2 {
				w.(http.Flusher).Flush()
				ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
				<-time.After(time.Duration(ms) * time.Millisecond)
				paused = true
			}
			k := min(len(buf), n-sent)
			if !paused {
				k = min(k, n/2-sent)
			}
			p.fill(buf[:k])
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			sent += k
			if chunked {
				w.(http.Flusher).Flush()
			}
		}
	}
	mux.HandleFunc("/dl", func(w http.ResponseWriter, r *http.Request) { download(w, r, false, false) })
	mux.HandleFunc("/dlc", func(w http.ResponseWriter, r *http.Request) { download(w, r, true, false) })
	mux.HandleFunc("/pause", func(w http.ResponseWriter, r *http.Request) { download(w, r, false, true) })
	mux.HandleFunc("/up", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range n {
			if ms > 0 && i > 0 {
				<-time.After(time.Duration(ms) * time.Millisecond)
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/proto", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	up := httptest.NewUnstartedServer(mux)
	up.EnableHTTP2 = h2
	up.Config.ErrorLog = log.New(io.Discard, "", 0) // clients that leave mid-handshake
	up.StartTLS()
	t.Cleanup(up.Close)
	return up
}

// pattern is a deterministic byte stream (xorshift64), so that a client
// checks a download without keeping a copy.
type pattern struct{ x uint64 }

func newPattern(seed uint64) *pattern { return &pattern{x: seed*0x9E3779B97F4A7C15 | 1} }

func (p *pattern) fill(b []byte) {
	for i := range b {
		p.x ^= p.x << 13
		p.x ^= p.x >> 7
		p.x ^= p.x << 17
		b[i] = byte(p.x)
	}
}

// tlsProxy serves one service, soak, on up (an httptest TLS server) with
// the timeout given, through engine, the proxy trusting up's certificate
// as both engines take it: from the base transport's TLSClientConfig.
func tlsProxy(t *testing.T, engine string, up *httptest.Server, timeout time.Duration) (*proxy.Server, *testProxy) {
	t.Helper()
	cfg, err := config.Parse("soak.yaml", []byte(fmt.Sprintf(`
services:
  - name: soak
    upstream: %s
    timeout: %s
`, up.URL, timeout)))
	if err != nil {
		t.Fatal(err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{RootCAs: up.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	base.ForceAttemptHTTP2 = true
	srv, err := proxy.New(cfg, proxy.Options{Transport: base, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return srv, startProxy(t, srv, engine)
}

// The engines against an HTTPS upstream: the net/http engine speaks HTTP/2
// to one that offers it, the fasthttp engine HTTP/1.1 (documented), and
// both HTTP/1.1 to one that offers only that.
func TestTLSUpstreamProtocolPerEngine(t *testing.T) {
	want := map[string]map[bool]string{
		config.EngineNetHTTP:  {true: "HTTP/2.0", false: "HTTP/1.1"},
		config.EngineFastHTTP: {true: "HTTP/1.1", false: "HTTP/1.1"},
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, h2 := range []bool{true, false} {
			_, p := tlsProxy(t, engine, soakUpstream(t, h2), 10*time.Second)
			resp, err := http.Get(p.URL + "/soak/proto")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != want[engine][h2] {
				t.Errorf("upstream offering h2=%v: %d %q, want 200 %q", h2, resp.StatusCode, body, want[engine][h2])
			}
		}
	})
}

// TestSoak runs concurrent clients through each engine to an HTTPS
// upstream: downloads with a Content-Length and chunked, uploads with a
// Content-Length and chunked (up to 32 MiB each way), event streams, and
// bodies that pause mid-way; every byte is checked, and every exchange must be counted as exactly one
// success. BREAKERBOX_SOAK=10m makes it a soak run: the clients go on for
// that long, one more client holds an event stream (10 a second) open for
// the whole run, and the test logs what went through and the heap every
// minute.
func TestSoak(t *testing.T) {
	soakFor, _ := time.ParseDuration(os.Getenv("BREAKERBOX_SOAK"))
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Parallel()
		srv, p := tlsProxy(t, engine, soakUpstream(t, false), 10*time.Second)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}
		defer client.CloseIdleConnections()

		const workers, rounds = 8, 12
		var done, moved atomic.Int64
		deadline := time.Now().Add(soakFor)
		var wg sync.WaitGroup
		errs := make(chan error, workers+1)
		for w := range workers {
			wg.Go(func() {
				for r := 0; r < rounds || time.Now().Before(deadline); r++ {
					n, err := soakExchange(client, p.URL+"/soak", w, r)
					if err != nil {
						errs <- fmt.Errorf("worker %d round %d: %w", w, r, err)
						return
					}
					done.Add(1)
					moved.Add(int64(n))
				}
			})
		}
		if soakFor > 0 {
			events := int(soakFor / (100 * time.Millisecond))
			wg.Go(func() {
				resp, err := client.Get(fmt.Sprintf("%s/soak/sse?n=%d&ms=100", p.URL, events))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				for i := 0; i < events; {
					if !sc.Scan() {
						errs <- fmt.Errorf("long stream: ended after %d of %d events: %v", i, events, sc.Err())
						return
					}
					if line := sc.Text(); line != "" {
						if want := fmt.Sprintf("data: %d", i); line != want {
							errs <- fmt.Errorf("long stream: %q, want %q", line, want)
							return
						}
						i++
					}
				}
				done.Add(1)
			})
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				tick := time.NewTicker(time.Minute)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						t.Logf("%s: %d exchanges, %.1f MB so far; %s", engine, done.Load(), float64(moved.Load())/1e6, heapNote())
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		c := circuitOf(t, srv, "soak")
		if got := c.Counts["success"]; got != uint64(done.Load()) || c.Counts["failure"] != 0 || c.Counts["ignored"] != 0 {
			t.Errorf("counts %v after %d exchanges: want each one success", c.Counts, done.Load())
		}
		if soakFor > 0 {
			t.Logf("%s: %d exchanges, %.1f MB through the proxy; %s", engine, done.Load(), float64(moved.Load())/1e6, heapNote())
		}
	})
}

// The service's timeout bounds the wait for the answer's head, not its
// body: over TLS too, a body that pauses twice as long as the timeout half
// way arrives whole, on both engines. (The fasthttp engine once read the
// head's end below TLS, never saw it, and cut such bodies.) One request at
// a time: the head is sent at once and has 2 s to arrive.
func TestBodyOutlastsTheTimeoutOverTLS(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Parallel()
		_, p := tlsProxy(t, engine, soakUpstream(t, false), 2*time.Second)
		const n = 256 << 10
		if err := download(http.DefaultClient, fmt.Sprintf("%s/soak/pause?n=%d&seed=1&ms=4000", p.URL, n), n, 1); err != nil {
			t.Error(err)
		}
	})
}

// An HTTPS upstream that accepts connections and never answers the TLS
// handshake: the request ends 504 with the service's timeout and counts as
// a failure, on both engines (fasthttp's own TLS had no deadline on the
// handshake when a service had no write timeout).
func TestStalledTLSHandshakeTimesOut(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var held []net.Conn // accepted, never answered; closed at the end
		var mu sync.Mutex
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range held {
				c.Close()
			}
		})
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: mute, upstream: 'https://%s', failure_threshold: 2, timeout: 200ms}]", l.Addr()))
		for range 2 {
			resp, body := f.get("/mute/x")
			if resp.StatusCode != 504 {
				t.Fatalf("%d %s: want 504", resp.StatusCode, body)
			}
		}
		if c := f.circuit("mute"); c.State != "open" || c.Counts["failure"] != 2 {
			t.Fatalf("state %s, counts %v after 2 stalled handshakes: want open, 2 failures", c.State, c.Counts)
		}
	})
}

// soakExchange is one client exchange, chosen by worker and round, checked
// byte for byte; it returns the bytes moved.
func soakExchange(c *http.Client, base string, w, r int) (int, error) {
	seed := uint64(w*1000 + r)
	n := 64<<10 + (w*7919+r*104729)%(2<<20) // 64 KiB to ~2 MiB, sizes that align with nothing
	if w == 0 && r == 0 {
		n = 32 << 20 // one large body each way
	}
	switch r % 5 {
	case 0, 1: // download, with a Content-Length and chunked
		path := "/dl"
		if r%5 == 1 {
			path = "/dlc"
		}
		return n, download(c, fmt.Sprintf("%s%s?n=%d&seed=%d", base, path, n, seed), n, seed)
	case 2: // upload, with a Content-Length (w even) or chunked
		body := make([]byte, n)
		newPattern(seed).fill(body)
		var rd io.Reader = bytes.NewReader(body)
		if w%2 == 1 {
			rd = io.MultiReader(rd) // hides the length: chunked
		}
		resp, err := c.Post(base+"/up", "application/octet-stream", rd)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		sum := sha256.Sum256(body)
		if want := fmt.Sprintf("%d %s", n, hex.EncodeToString(sum[:])); resp.StatusCode != 200 || string(got) != want {
			return 0, fmt.Errorf("upload of %d bytes: %d %q, want 200 %q", n, resp.StatusCode, got, want)
		}
		return n, nil
	case 3: // an event stream
		events := 200 + w*10
		resp, err := c.Get(fmt.Sprintf("%s/sse?n=%d", base, events))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		var want bytes.Buffer
		for i := range events {
			fmt.Fprintf(&want, "data: %d\n\n", i)
		}
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, want.Bytes()) {
			return 0, fmt.Errorf("event stream: %d, %d bytes (%v), want 200 and %d bytes", resp.StatusCode, len(got), err, want.Len())
		}
		return len(got), nil
	default: // a body that pauses mid-way
		n = 256 << 10
		return n, download(c, fmt.Sprintf("%s/pause?n=%d&seed=%d&ms=50", base, n, seed), n, seed)
	}
}

// download GETs url and checks its body is the n bytes of pattern(seed).
func download(c *http.Client, url string, n int, seed uint64) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	p, want, got := newPattern(seed), make([]byte, 32<<10), make([]byte, 32<<10)
	for read := 0; ; {
		k, err := resp.Body.Read(got)
		if read+k > n {
			return fmt.Errorf("GET %s: more than %d bytes", url, n)
		}
		p.fill(want[:k])
		if !bytes.Equal(got[:k], want[:k]) {
			return fmt.Errorf("GET %s: bytes %d–%d differ", url, read, read+k)
		}
		read += k
		if err == io.EOF {
			if read != n {
				return fmt.Errorf("GET %s: %d bytes, want %d", url, read, n)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("GET %s: after %d of %d bytes: %w", url, read, n, err)
		}
	}
}

// circuitOf is the named circuit as the API shows it.
func circuitOf(t *testing.T, srv *proxy.Server, name string) proxy.Circuit {
	t.Helper()
	for _, c := range srv.Circuits() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no circuit %q", name)
	return proxy.Circuit{}
}

// heapNote is the process's heap after a collection, for a soak run's log.
func heapNote() string {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return fmt.Sprintf("heap in use after GC %.1f MB, %d goroutines", float64(m.HeapInuse)/1e6, runtime.NumGoroutine())
}
