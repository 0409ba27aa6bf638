package proxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBodiesAroundTheSmallBodyLimit: answers with a Content-Length on
// either side of the 4 KiB below which the fasthttp engine reads a body
// whole instead of streaming it arrive byte for byte, one after the other
// on one client connection, and the proxy keeps one upstream connection
// for all of them (a body read whole is read to its end, so the
// connection goes back to the pool).
func TestBodiesAroundTheSmallBodyLimit(t *testing.T) {
	sizes := []int{0, 1, 205, 4095, 4096, 4097, 70000}
	forEachEngine(t, func(t *testing.T, engine string) {
		var conns atomic.Int32
		up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var n int
			fmt.Sscan(r.URL.Query().Get("n"), &n)
			w.Header().Set("Content-Length", fmt.Sprint(n))
			w.Write(bodyOf(n))
		}))
		up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		up.Start()
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
		defer client.CloseIdleConnections()
		for round := range 3 {
			for _, n := range sizes {
				resp, err := client.Get(fmt.Sprintf("%s/svc/x?n=%d", f.proxy.URL, n))
				if err != nil {
					t.Fatalf("round %d, %d bytes: %v", round, n, err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(n) || !bytes.Equal(body, bodyOf(n)) {
					t.Fatalf("round %d, %d bytes: status %d, Content-Length %d, %d bytes read (%v), equal %v",
						round, n, resp.StatusCode, resp.ContentLength, len(body), err, bytes.Equal(body, bodyOf(n)))
				}
			}
		}
		if got := conns.Load(); got != 1 {
			t.Errorf("the upstream saw %d connections for %d sequential requests, want 1", got, 3*len(sizes))
		}
	})
}

// TestUpstreamBodyCutShort: an upstream that promises a Content-Length
// and closes half way leaves the client with a cut answer, never a
// complete-looking one, on both sides of the small-body limit; the next
// request is served.
func TestUpstreamBodyCutShort(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, n := range []int{100, 4096, 20000} {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				addr := cuttingUpstream(t, n)
				f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: 'http://%s'}]", addr))
				c, err := net.Dial("tcp", strings.TrimPrefix(f.proxy.URL, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second)) // a deadlock guard
				io.WriteString(c, "GET /svc/x HTTP/1.1\r\nHost: a\r\n\r\n")
				got, _ := io.ReadAll(c) // the proxy must close the connection
				if resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil); err == nil {
					body, err := io.ReadAll(resp.Body)
					if err == nil && resp.StatusCode == 200 {
						t.Fatalf("a body cut at %d of %d bytes reached the client as a whole answer of %d bytes: %.200q", n/2, n, len(body), got)
					}
				}
				// The proxy is unharmed: the next request gets its (cut) answer too.
				resp, err := http.Get(f.proxy.URL + "/svc/x")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
	})
}

// cuttingUpstream answers every request with a head promising n bytes and
// half of them, then closes the connection.
func cuttingUpstream(t *testing.T, n int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
				c.Write(bodyOf(n)[:n/2])
			}()
		}
	}()
	return l.Addr().String()
}

// bodyOf is n bytes of soak_test.go's pattern.
func bodyOf(n int) []byte {
	b := make([]byte, n)
	newPattern(uint64(n)).fill(b)
	return b
}
