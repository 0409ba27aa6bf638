package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// readingUpstream answers 200 only after reading the whole request body, so
// a round trip whose body cannot be read never gets an answer first.
func readingUpstream(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return
		}
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	return up, &hits
}

// rawRequest writes raw to a new connection to addr and returns the
// response, read once the request is complete.
func rawRequest(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, c)
}

func readResponse(t *testing.T, c net.Conn) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second)) // a hang fails the test instead of the run
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestMalformedChunkedBodyAnswers400AndIsIgnored(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up, hits := readingUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 2}]", up.URL))
		addr := strings.TrimPrefix(f.proxy.URL, "http://")
		for i := range 5 {
			resp := rawRequest(t, addr, "POST /svc/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
			if b := body(resp); resp.StatusCode != 400 || !strings.Contains(b, "could not read the request body") {
				t.Fatalf("request %d: %d %s, want 400", i+1, resp.StatusCode, b)
			}
		}
		c := f.circuit("svc")
		if c.State != "closed" || c.Counts["failure"] != 0 || c.Counts["ignored"] != 5 {
			t.Fatalf("after 5 malformed bodies: %s, counts %v; want closed, 5 ignored", c.State, c.Counts)
		}
		if hits.Load() != 0 {
			t.Fatalf("the upstream answered %d malformed requests", hits.Load())
		}
	})
}

func TestSlowUploadIsNotTimedAgainstTheUpstream(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up, hits := readingUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 1, timeout: 100ms}]", up.URL))
		c, err := net.Dial("tcp", strings.TrimPrefix(f.proxy.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const payload = "abcdefgh"
		fmt.Fprintf(c, "POST /svc/x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", len(payload))
		// The upload takes 4 × the service's timeout; the upstream, once it has
		// the body, answers at once.
		for i := range len(payload) {
			time.Sleep(50 * time.Millisecond)
			c.Write([]byte{payload[i]})
		}
		if resp := readResponse(t, c); resp.StatusCode != 200 {
			t.Fatalf("slow upload: %d %s, want the upstream's 200", resp.StatusCode, body(resp))
		}
		if got := f.circuit("svc"); got.State != "closed" || got.Counts["success"] != 1 || got.Counts["failure"] != 0 || hits.Load() != 1 {
			t.Fatalf("circuit %s counts %v, upstream hits %d", got.State, got.Counts, hits.Load())
		}
	})
}

func TestStalledUploadAnswers408AndIsIgnored(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up, hits := readingUpstream(t)
		srv := newServer(t, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 1}]", up.URL), slog.New(slog.DiscardHandler))
		// What the listener's read timeout does to a stalled client.
		ps := startProxyWith(t, srv, engine, config.ListenerLimits{ReadTimeout: config.Dur(300 * time.Millisecond)})
		// More than 8 KiB arrive before the stall: fasthttp reads up to 8 KiB
		// of a body before the proxy sees the request, and answers a stall
		// within them 408 itself, without asking the breaker.
		resp := rawRequest(t, strings.TrimPrefix(ps.URL, "http://"),
			"POST /svc/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n"+strings.Repeat("a", 9<<10))
		if b := body(resp); resp.StatusCode != 408 || !strings.Contains(b, "did not arrive in time") {
			t.Fatalf("stalled upload: %d %s, want 408", resp.StatusCode, b)
		}
		snap := srv.Registry().MustGet("svc").Snapshot()
		if snap.State.String() != "closed" || snap.Failures != 0 || snap.Ignored != 1 || hits.Load() != 0 {
			t.Fatalf("after a stalled upload: %v failures %d ignored %d hits %d", snap.State, snap.Failures, snap.Ignored, hits.Load())
		}
	})
}

// TestOutOfFileDescriptorsIsIgnored runs the proxy out of file descriptors
// for real (RLIMIT_NOFILE lowered to the lowest free descriptor, after the
// client's connection is accepted): dialling the upstream fails with
// EMFILE, which must not count against the healthy upstream.
func TestOutOfFileDescriptorsIsIgnoredAndLoggedOncePerBurst(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up, hits := readingUpstream(t)
		var logs syncbuf.Buffer
		srv := newServer(t, fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 2}]", up.URL), slog.New(slog.NewTextHandler(&logs, nil)))
		ps := startProxy(t, srv, engine)
		const n = 5
		conns := make([]net.Conn, n)
		for i := range conns {
			c, err := net.Dial("tcp", strings.TrimPrefix(ps.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
		}
		// A round trip on each connection that dials nothing (an unknown
		// service) makes sure the server holds its end before the limit drops.
		for _, c := range conns {
			io.WriteString(c, "GET /nope/x HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp := readResponse(t, c); resp.StatusCode != 404 {
				t.Fatalf("warm-up: %d", resp.StatusCode)
			}
		}
		var old syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Fatal(err)
		}
		low := old
		low.Cur = lowestFreeFD(t)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
			t.Fatal(err)
		}
		// Fill any descriptor freed since (below the limit, it would let one
		// dial through).
		var filler []int
		for {
			fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				break
			}
			filler = append(filler, fd)
		}
		restored := false
		restore := func() {
			if !restored {
				restored = true
				for _, fd := range filler {
					syscall.Close(fd)
				}
				syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
			}
		}
		defer restore()
		codes := make([]int, n)
		for i, c := range conns {
			io.WriteString(c, "GET /svc/x HTTP/1.1\r\nHost: a\r\n\r\n")
			resp := readResponse(t, c)
			codes[i] = resp.StatusCode
		}
		restore()
		for i, code := range codes {
			if code != 503 {
				t.Fatalf("request %d out of descriptors: %d, want 503", i+1, code)
			}
		}
		snap := srv.Registry().MustGet("svc").Snapshot()
		if snap.State.String() != "closed" || snap.Failures != 0 || snap.Ignored != n {
			t.Fatalf("after %d EMFILE: %v failures %d ignored %d", n, snap.State, snap.Failures, snap.Ignored)
		}
		if got := strings.Count(logs.String(), "level=ERROR"); got != 1 || !strings.Contains(logs.String(), "too many open files") {
			t.Fatalf("%d ERROR lines for one burst, want 1:\n%s", got, logs.String())
		}
		if resp := rawRequest(t, strings.TrimPrefix(ps.URL, "http://"), "GET /svc/x HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || hits.Load() != 1 {
			t.Fatalf("after the limit is restored: %d, upstream hits %d", resp.StatusCode, hits.Load())
		}
	})
}

func newServer(t *testing.T, yaml string, log *slog.Logger) *proxy.Server {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func lowestFreeFD(t *testing.T) uint64 {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	open := map[uint64]bool{}
	for _, e := range entries {
		n, _ := strconv.ParseUint(e.Name(), 10, 64)
		open[n] = true
	}
	// ReadDir's own descriptor is closed by now: it is free again.
	for fd := uint64(0); ; fd++ {
		if !open[fd] {
			return fd
		}
	}
}
