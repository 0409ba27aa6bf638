package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestStreamIsFlushedPerWrite: an answer of unknown length reaches the
// client piece by piece, each before the upstream writes the next.
func TestStreamIsFlushedPerWrite(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		next := make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				select { // the client has read this event
				case <-next:
				case <-time.After(20 * time.Second): // a deadlock guard
					return
				}
			}
		}))
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		client := &http.Client{Timeout: 20 * time.Second} // a deadlock guard: unflushed, the first event never comes
		resp, err := client.Get(f.proxy.URL + "/svc/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ContentLength != -1 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%d %v", resp.ContentLength, resp.Header)
		}
		br := bufio.NewReader(resp.Body)
		for i := range 3 {
			line, err := br.ReadString('\n')
			if err != nil || line != fmt.Sprintf("data: %d\n", i) {
				t.Fatalf("event %d: %q %v", i, line, err)
			}
			br.ReadString('\n')
			next <- struct{}{}
		}
	})
}

// TestTrailersAreForwarded: announced and unannounced trailers both reach
// the client, as ReverseProxy forwards them.
func TestTrailersAreForwarded(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		}))
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		resp, err := http.Get(f.proxy.URL + "/svc/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "body" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "late" {
			t.Fatalf("%q trailer %v", body, resp.Trailer)
		}
	})
}

// TestUpgradeIsForwarded: a protocol switch (WebSocket's handshake, then
// bytes both ways) goes through, by ReverseProxy.
func TestUpgradeIsForwarded(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "echo" {
				http.Error(w, "want Upgrade: echo", 400)
				return
			}
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo " + line)
			brw.Flush()
		}))
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		c, err := net.Dial("tcp", strings.TrimPrefix(f.proxy.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second)) // a deadlock guard
		fmt.Fprintf(c, "GET /svc/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("%v %v", resp, err)
		}
		io.WriteString(c, "hello\n")
		if line, err := br.ReadString('\n'); line != "echo hello\n" {
			t.Fatalf("%q %v", line, err)
		}
	})
}

// TestQueryIsForwardedAsReverseProxyDoes: a query ReverseProxy re-encodes
// (a ';', a bad escape) is re-encoded; others pass as sent.
func TestQueryIsForwardedAsReverseProxyDoes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up, uris := uriUpstream(t)
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		for _, q := range []string{"a=1&b=%2F+c", "a=1;b=2", "a=%zz&b=1"} {
			f.get("/svc/x?" + q)
		}
		got := uris()
		want := []string{"/x?a=1&b=%2F+c", "/x", "/x?b=1"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("upstream saw %q, want %q", got, want)
		}
	})
}

// TestHopByHopNamesArePerConnection: a name that one upstream's closing
// answer nominated stays an ordinary field of another upstream's answer.
func TestHopByHopNamesArePerConnection(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		closing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close, X-Shared")
			w.Header().Set("X-Shared", "hop-by-hop")
		}))
		defer closing.Close()
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			w.Header().Set("X-Shared", "end-to-end")
		}))
		defer other.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: a, upstream: %q}, {name: b, upstream: %q}]", closing.URL, other.URL))
		if resp, _ := f.get("/a/x"); resp.Header.Get("X-Shared") != "" {
			t.Fatalf("a: %v", resp.Header)
		}
		if resp, _ := f.get("/b/x"); resp.Header.Get("X-Shared") != "end-to-end" {
			t.Fatalf("b: %v", resp.Header)
		}
	})
}

// TestHeadAnswerIsPassedOnAsIs: the answer to a HEAD keeps the upstream's
// Content-Length (of the body it would have sent) and gets no Content-Type
// the upstream did not send.
func TestHeadAnswerIsPassedOnAsIs(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil // no sniffing
			w.Header().Set("Content-Length", "5")
			if r.Method != http.MethodHead {
				io.WriteString(w, "hello")
			}
		}))
		defer up.Close()
		f := newFixtureOn(t, engine, fmt.Sprintf("services: [{name: svc, upstream: %q}]", up.URL))
		resp, err := http.Head(f.proxy.URL + "/svc/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != 5 || resp.Header["Content-Type"] != nil {
			t.Fatalf("HEAD: %d, length %d, header %v; want 200, 5, no Content-Type", resp.StatusCode, resp.ContentLength, resp.Header)
		}
	})
}
