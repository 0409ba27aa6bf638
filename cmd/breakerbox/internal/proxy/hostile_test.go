package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// seen is one request as the upstream received it.
type seen struct {
	Method, URI, Proto, Host string
	Header                   http.Header
	TE                       []string
	ContentLength            int64
	Body                     string
	BodyErr                  string
}

// recordingUpstream answers every request 200 with "uri=<request-target>"
// and keeps what it received, so a test can say what reached it.
type recordingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newRecordingUpstream(t *testing.T) *recordingUpstream {
	u := &recordingUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		s := seen{Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host, Header: r.Header.Clone(),
			TE: r.TransferEncoding, ContentLength: r.ContentLength, Body: string(b)}
		if err != nil {
			s.BodyErr = err.Error()
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, s)
		u.mu.Unlock()
		io.WriteString(w, "uri="+r.RequestURI)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) received() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.reqs...)
}

// answer is one response the client read.
type answer struct {
	status int
	body   string
	close  bool // it said Connection: close
}

// conversation is what a client got for its raw bytes: the answers it
// read, and whether the connection was then closed (a probe request sent
// after them got no answer) or still served (the probe was answered).
type conversation struct {
	answers []answer
	closed  bool
	probe   *answer // the probe's answer, when the connection stayed open
	err     string  // a read that failed before the expected answers came
}

// probePath is the probe's target: another service on the same upstream,
// so that the probe neither counts on svc's breaker nor meets its open
// circuit.
const probePath = "/other/probe"

// converse writes raw to a new connection to addr (then half-closes it if
// eof), reads want answers, and then finds out whether the connection is
// still usable: after an answer that said Connection: close (or none at
// all when want is 0) the server must close it; otherwise it must answer
// a probe request, and that answer must be the probe's.
func converse(t *testing.T, addr, raw string, want int, eof bool) conversation {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A hang fails the case instead of the run.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return conversation{err: "write: " + err.Error(), closed: true}
	}
	if eof {
		c.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(c)
	var conv conversation
	for len(conv.answers) < max(want, 1) {
		a, err := readAnswer(br)
		if err != nil {
			conv.closed = isClosed(err)
			if !conv.closed {
				conv.err = err.Error()
			}
			return conv
		}
		conv.answers = append(conv.answers, a)
		if a.close {
			break
		}
	}
	if eof || conv.answers[len(conv.answers)-1].close {
		// The server must close now: anything else is an extra answer.
		if a, err := readAnswer(br); err == nil {
			conv.err = fmt.Sprintf("an answer after the last one: %d %q", a.status, a.body)
		} else if !isClosed(err) {
			conv.err = "not closed: " + err.Error()
		}
		conv.closed = true
		return conv
	}
	if _, err := io.WriteString(c, "GET "+probePath+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		conv.closed = true
		return conv
	}
	a, err := readAnswer(br)
	if err != nil {
		conv.closed = isClosed(err)
		if !conv.closed {
			conv.err = "probe: " + err.Error()
		}
		return conv
	}
	conv.probe = &a
	return conv
}

// readAnswer reads the next final answer, past any 1xx.
func readAnswer(br *bufio.Reader) (answer, error) {
	for range 10 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return answer{}, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return answer{}, err
		}
		if resp.StatusCode >= 200 {
			return answer{status: resp.StatusCode, body: string(b), close: resp.Close}, nil
		}
	}
	return answer{}, errors.New("more than 10 informational answers")
}

// isClosed reports whether err is the server closing the connection (EOF
// or a reset), as opposed to a timeout.
func isClosed(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "reset")
}

// want is what one engine does with a hostile request.
type want struct {
	answers []int // the statuses the client reads, in order (1xx skipped); nil: none, the connection ends
	closed  bool  // then the connection is closed (else a probe request is answered on it)
	// up are the complete requests the upstream receives, each
	// "METHOD request-target|body", in order; nil: none.
	up []string
	// aborted: the upstream may also see the start of the request, cut
	// mid-body (bodies stream to the upstream as they arrive, so a
	// malformed chunk can come after the head went upstream).
	aborted  bool
	ignored  uint64 // svc's breaker's Ignored count; Successes must be len(up), Failures 0
	rejected uint64 // the breaker's Rejected count
}

// hostileCase is raw bytes a client sends, and each engine's answer to
// them. fast is nil when the fasthttp engine answers as net/http does;
// note says why they differ when they do.
type hostileCase struct {
	name, raw string
	eof       bool // the client half-closes after sending raw
	timeout   bool // the listener has a 1 s head timeout (for a head one engine waits on)
	open      bool // the circuit is forced open
	net       want
	fast      *want
	note      string
	check     func(t *testing.T, r seen) // more about each complete upstream request
}

const smuggled = "GET /svc/smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

// TestHostileRequests sends hostile and malformed requests as raw bytes to
// both engines in front of a recording upstream, and checks what the
// client gets, what reaches the upstream (never a request the client did
// not send as a whole request: /svc/smuggled is only ever inside another
// request's body, or after a request the server must close after), and
// the breaker's counts (a client's malformed request is never a failure).
func TestHostileRequests(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, engine string) {
				w := tc.net
				if engine != engines[0] && tc.fast != nil {
					w = *tc.fast
				}
				runHostile(t, engine, tc, w)
			})
		})
	}
}

func runHostile(t *testing.T, engine string, tc hostileCase, w want) {
	up := newRecordingUpstream(t)
	srv := newServer(t, fmt.Sprintf("services: [{name: svc, upstream: '%[1]s/base'}, {name: other, upstream: '%[1]s/base'}]", up.URL), slog.New(slog.DiscardHandler))
	var lim config.ListenerLimits
	if tc.timeout {
		lim.ReadHeaderTimeout, lim.ReadTimeout = config.Dur(time.Second), config.Dur(time.Second)
	}
	if tc.open {
		srv.Registry().MustGet("svc").ForceOpen()
	}
	p := startProxyWith(t, srv, engine, lim)
	conv := converse(t, strings.TrimPrefix(p.URL, "http://"), tc.raw, len(w.answers), tc.eof)

	var got []int
	for _, a := range conv.answers {
		got = append(got, a.status)
	}
	if conv.err != "" {
		t.Errorf("the conversation: %s", conv.err)
	}
	if !slices.Equal(got, w.answers) || conv.closed != w.closed {
		t.Errorf("client got %v, closed %v; want %v, closed %v (bodies %q)", got, conv.closed, w.answers, w.closed, bodies(conv.answers))
	}
	if conv.probe != nil {
		if conv.probe.status != 200 || conv.probe.body != "uri=/base/probe" {
			t.Errorf("the probe after the answers got %d %q: the connection is out of step", conv.probe.status, conv.probe.body)
		}
	}

	var complete []string
	aborted := 0
	for _, r := range up.received() {
		if r.URI == "/base/probe" {
			continue
		}
		if r.BodyErr != "" {
			aborted++
			continue
		}
		complete = append(complete, r.Method+" "+r.URI+"|"+r.Body)
		checkForwarded(t, up, r)
		if tc.check != nil {
			tc.check(t, r)
		}
	}
	if !slices.Equal(complete, w.up) {
		t.Errorf("the upstream received %q, want %q", short(complete), short(w.up))
	}
	if aborted > 1 || aborted > 0 && !w.aborted {
		t.Errorf("the upstream saw %d requests cut mid-body", aborted)
	}

	// The counts are final once the answers are read; the poll only spares
	// the test a report that lands just after the answer is written.
	b := srv.Registry().MustGet("svc")
	wantS := uint64(len(w.up))
	deadline := time.Now().Add(5 * time.Second)
	snap := b.Snapshot()
	for (snap.Successes != wantS || snap.Ignored != w.ignored || snap.Rejected != w.rejected) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		snap = b.Snapshot()
	}
	if snap.Failures != 0 || snap.Successes != wantS || snap.Ignored != w.ignored || snap.Rejected != w.rejected {
		t.Errorf("breaker: %d successes, %d failures, %d ignored, %d rejected; want %d, 0, %d, %d",
			snap.Successes, snap.Failures, snap.Ignored, snap.Rejected, wantS, w.ignored, w.rejected)
	}
	t.Logf("%s %s: answers %v closed %v; upstream %q (+%d cut); S=%d F=%d I=%d", tc.name, engine, got, conv.closed, short(complete), aborted, snap.Successes, snap.Failures, snap.Ignored)
}

// short cuts each of ss to 80 bytes, for messages.
func short(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if len(s) > 80 {
			s = fmt.Sprintf("%s…(%d bytes)…%s", s[:40], len(s), s[len(s)-30:])
		}
		out[i] = s
	}
	return out
}

func bodies(as []answer) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.body)
	}
	return short(out)
}

// checkForwarded holds for every request the proxy forwards: the
// upstream's own Host, the proxy's X-Forwarded-For alone, no header the
// client did not send as a header, and no smuggled request.
func checkForwarded(t *testing.T, up *recordingUpstream, r seen) {
	t.Helper()
	if want := strings.TrimPrefix(up.URL, "http://"); r.Host != want {
		t.Errorf("%s %s: Host %q, want the upstream's %q", r.Method, r.URI, r.Host, want)
	}
	if xff := r.Header["X-Forwarded-For"]; len(xff) != 1 || xff[0] != "127.0.0.1" {
		t.Errorf("%s %s: X-Forwarded-For %q, want the client's address alone", r.Method, r.URI, xff)
	}
	for _, k := range []string{"X-Injected", "Forwarded", "Content-Type", "Transfer-Encoding", "Connection", "Breakerbox-Circuit"} {
		if v, ok := r.Header[k]; ok && !(k == "Connection" && r.Header.Get("Upgrade") != "") { // an upgrade keeps its Connection: Upgrade
			t.Errorf("%s %s: the upstream got %s: %q", r.Method, r.URI, k, v)
		}
	}
	if strings.Contains(r.URI, "smuggled") {
		t.Errorf("a smuggled request reached the upstream: %s %s", r.Method, r.URI)
	}
}

// Shorthands for the expectations.
var (
	bad      = want{answers: []int{400}, closed: true} // refused by the server before the handler
	notImpl  = want{answers: []int{501}, closed: true}
	tooLarge = want{answers: []int{431}, closed: true}
	badBody  = want{answers: []int{400}, closed: true, aborted: true, ignored: 1} // the body failed mid-way: the client's fault
)

func ok(up ...string) want         { return want{answers: []int{200}, up: up} }
func okClosed(up ...string) want   { return want{answers: []int{200}, closed: true, up: up} }
func answered(code int) want       { return want{answers: []int{code}} }
func answeredClosed(code int) want { return want{answers: []int{code}, closed: true} }
func fast(w want) *want            { return &w }
func header(k, v string) func(*testing.T, seen) {
	return func(t *testing.T, r seen) {
		if got := r.Header[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s %s: %s %q, want %q", r.Method, r.URI, k, got, v)
		}
	}
}

// expectNote is why the engines differ on an Expect: 100-continue request
// answered without reading its body.
const expectNote = "harmless: net/http has not sent 100 Continue, cannot tell whether the body will come, and closes; fasthttp sent 100 Continue before the handler ran, so it reads the body and keeps the connection"

func hostileCases() []hostileCase {
	post := "POST /svc/x HTTP/1.1\r\nHost: a\r\n"
	get := "GET /svc/x HTTP/1.1\r\nHost: a\r\n"
	chunked := post + "Transfer-Encoding: chunked\r\n\r\n"
	big := strings.Repeat("a", 20<<10)
	var many strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&many, "X-H%d: v\r\n", i)
	}
	return []hostileCase{
		// Request smuggling: framing the proxy and a peer could read
		// differently. A request with both Content-Length and
		// Transfer-Encoding is read chunked, and its connection closed
		// (RFC 9112 section 6.3), so what Content-Length would call the
		// next request is never read.
		{name: "cl+te", raw: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: okClosed("POST /base/x|hello")},
		{name: "te+cl", raw: post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: okClosed("POST /base/x|hello")},
		{name: "cl.te", raw: post + "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			net: okClosed("POST /base/x|")},
		// The same where the proxy answers without forwarding: the
		// connection is closed all the same (the server, not the handler,
		// reads what is left of the body).
		{name: "cl.te, circuit open", raw: post + "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, open: true,
			net: want{answers: []int{503}, closed: true, rejected: 1}},
		{name: "cl.te, unknown service", raw: "POST /nope/x HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			net: answeredClosed(404)},
		{name: "te.cl", raw: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled),
			net: okClosed("POST /base/x|" + smuggled)},
		{name: "two content-lengths", raw: post + "Content-Length: 5\r\nContent-Length: 44\r\n\r\nhello" + smuggled, net: bad},
		{name: "two equal content-lengths", raw: post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
			net: ok("POST /base/x|hello"), fast: fast(bad),
			note: "harmless: RFC 9110 lets a recipient take equal repeated values as one (net/http) or refuse them (fasthttp)"},
		{name: "content-length list", raw: post + "Content-Length: 5, 5\r\n\r\nhello", net: bad},
		{name: "content-length sign", raw: post + "Content-Length: +5\r\n\r\nhello", net: bad},
		{name: "te chunked, identity", raw: post + "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: notImpl, fast: fast(bad), note: "harmless: both refuse and close; fasthttp says 400"},
		{name: "te identity, chunked", raw: post + "Transfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: notImpl, fast: fast(bad), note: "harmless: both refuse and close; fasthttp says 400"},
		{name: "te xchunked", raw: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
			net: notImpl, fast: fast(bad), note: "harmless: both refuse and close; fasthttp says 400"},
		{name: "te xchunked and cl", raw: post + "Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\nhello",
			net: notImpl, fast: fast(bad), note: "harmless: both refuse and close; fasthttp says 400"},
		// fasthttp reads "identity" as no coding, so the body was read as
		// the next request: fixed (scanHead).
		{name: "te identity", raw: post + "Transfer-Encoding: identity\r\n\r\n" + smuggled, net: notImpl},
		{name: "te identity and cl", raw: post + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", net: notImpl},
		{name: "te twice", raw: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: notImpl, fast: fast(bad), note: "harmless: both refuse and close; fasthttp says 400"},
		{name: "te space before colon", raw: post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, net: bad},
		{name: "te name with inner space", raw: post + "Transfer Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", net: bad},
		// Tab before the value and the coding's case are allowed: the
		// body ends at the last chunk, and what follows is a pipelined
		// request the client did send whole.
		{name: "te tab and case", raw: post + "Transfer-Encoding:\tCHUNKED\r\n\r\n0\r\n\r\nGET /svc/second HTTP/1.1\r\nHost: a\r\n\r\n",
			net: okClosed("POST /base/x|"), fast: fast(want{answers: []int{200, 200}, up: []string{"POST /base/x|", "GET /base/second|"}}),
			note: "documented: net/http closes the connection after every chunked request (closeIfFramingHidden), fasthttp only after one that also had Content-Length"},
		// HTTP/1.0 has no chunked coding: net/http ignores the header
		// (Go issue 12785), fasthttp refuses it; both then close
		// (RFC 9112 section 6.1), net/http also when keep-alive was asked
		// for (closeIfFramingHidden).
		{name: "te in http/1.0", raw: "POST /svc/x HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: okClosed("POST /base/x|"), fast: fast(bad), note: "harmless: both close; net/http forwards the request without its body"},
		{name: "te in http/1.0 keep-alive", raw: "POST /svc/x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled,
			net: okClosed("POST /base/x|"), fast: fast(bad), note: "harmless: both close; net/http forwards the request without its body"},

		// Chunked bodies: a malformed one is the client's fault (400,
		// ignored), and its connection closed.
		{name: "chunk size not hex", raw: chunked + "zz\r\nhello\r\n0\r\n\r\n", net: badBody},
		{name: "chunk size negative", raw: chunked + "-5\r\nhello\r\n0\r\n\r\n", net: badBody},
		{name: "chunk size overflows", raw: chunked + "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n", net: badBody},
		{name: "chunk size 0x", raw: chunked + "0x5\r\nhello\r\n0\r\n\r\n", net: badBody},
		{name: "chunk longer than its size", raw: chunked + "3\r\nhello\r\n0\r\n\r\n", net: badBody},
		{name: "chunk data without crlf", raw: chunked + "5\r\nhelloXX0\r\n\r\n", net: badBody},
		{name: "chunk lines with bare lf", raw: chunked + "5\nhello\n0\n\n", net: badBody},
		{name: "chunk extension", raw: chunked + "5;a=b\r\nhello\r\n0\r\n\r\n", net: okClosed("POST /base/x|hello"), fast: fast(ok("POST /base/x|hello")),
			note: "documented: net/http closes the connection after every chunked request (closeIfFramingHidden), fasthttp only after one that also had Content-Length"},
		{name: "chunk extension with lf", raw: chunked + "5;a\nb\r\nhello\r\n0\r\n\r\n", net: badBody},
		{name: "chunk extension with cr", raw: chunked + "5;a\rb\r\nhello\r\n0\r\n\r\n", net: badBody},
		{name: "no last chunk then eof", raw: chunked + "5\r\nhello\r\n", eof: true, net: badBody},
		{name: "short content-length then eof", raw: post + "Content-Length: 10\r\n\r\nhello", eof: true,
			net: want{answers: []int{400}, closed: true, aborted: true, ignored: 1}, fast: fast(bad),
			note: "documented: fasthttp reads the first 8 KiB of a body before the handler runs, so it refuses this one itself and the breaker never sees it"},
		{name: "forbidden trailer", raw: chunked + "5\r\nhello\r\n0\r\nHost: evil\r\n\r\n",
			net: okClosed("POST /base/x|hello"), fast: fast(badBody),
			note: "harmless: net/http reads and drops the trailer (none is forwarded: none was announced); fasthttp refuses a Host trailer"},

		// Header syntax: nothing the client sent inside a value or a
		// malformed line may reach the upstream as a header of its own.
		{name: "obs-fold", raw: get + "X-A: one\r\n two\r\nX-B: b\r\n\r\n", net: ok("GET /base/x|"), check: header("X-A", "one two")},
		{name: "obs-fold hiding a header", raw: get + "X-A: one\r\n\tX-Injected: 1\r\n\r\n", net: ok("GET /base/x|"), check: header("X-A", "one X-Injected: 1")},
		// fasthttp forwarded a name with an inner space, which the
		// upstream refused: fixed (scanHead).
		{name: "header name with space", raw: get + "X A: b\r\n\r\n", net: bad},
		{name: "header name starting with colon", raw: get + ":X: b\r\n\r\n", net: bad},
		{name: "header name with nul", raw: get + "X\x00A: b\r\n\r\n", net: bad},
		{name: "header name empty", raw: get + ": b\r\n\r\n", net: bad},
		{name: "header name not a token", raw: get + "X@A: b\r\n\r\n", net: bad},
		{name: "header line without colon", raw: get + "X-Injected\r\n\r\n", net: bad},
		{name: "cr in header value", raw: get + "X-A: b\rX-Injected: 1\r\n\r\n", net: bad},
		{name: "nul in header value", raw: get + "X-A: b\x00c\r\n\r\n", net: bad},
		{name: "cr in host", raw: "GET /svc/x HTTP/1.1\r\nHost: a\rX-Injected: 1\r\n\r\n", net: bad},
		// A bare LF ends a line for both parsers (RFC 9112 section 2.2
		// allows it), so X-Second is a header the proxy read as one, and
		// forwards with CRLF.
		{name: "lf in header value", raw: get + "X-A: b\nX-Second: 1\r\n\r\n", net: ok("GET /base/x|"), check: header("X-Second", "1")},
		{name: "bare lf in part of the head", raw: "GET /svc/x HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", net: ok("GET /base/x|"), check: header("X-A", "b")},
		{name: "bare lf everywhere", raw: "GET /svc/x HTTP/1.1\nHost: a\nX-A: b\n\n", timeout: true,
			net: ok("GET /base/x|"), fast: fast(bad),
			note: "documented: fasthttp waits for a CRLFCRLF to end the head, so a head ended by bare LFs alone waits for the head timeout, then is refused"},

		// Request-targets.
		{name: "absolute-form", raw: "GET http://evil/svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x|"),
			check: header("X-Forwarded-Host", "evil")}, // RFC 9112 section 3.2.2: the target's authority is the host
		{name: "absolute-form elsewhere", raw: "GET http://evil/x HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(404)},
		{name: "connect authority-form", raw: "CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", net: answered(404)},
		{name: "connect to a service path", raw: "CONNECT /svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("CONNECT /base/x|")},
		{name: "options asterisk", raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(200), fast: fast(answered(404)),
			note: "harmless: net/http's server answers OPTIONS * itself; fasthttp passes it on to the proxy, which knows no service '*'"},
		{name: "dot-dot", raw: "GET /svc/../admin HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(400)},
		{name: "encoded dot-dot", raw: "GET /svc/%2e%2e/admin HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(400)},
		{name: "dot-dot into a service", raw: "GET /x/../svc/y HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(400)},
		{name: "encoded nul", raw: "GET /svc/a%00b HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/a%00b|")},
		{name: "raw nul", raw: "GET /svc/a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", net: bad},
		{name: "bad escape", raw: "GET /svc/a%zz HTTP/1.1\r\nHost: a\r\n\r\n", net: bad, fast: fast(answered(400)),
			note: "harmless: fasthttp leaves the path to the proxy, which refuses it without closing"},
		{name: "fragment", raw: "GET /svc/a#frag HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/a%23frag|"), fast: fast(ok("GET /base/a|")),
			note: "harmless: a request-target has no fragment; net/http keeps '#' in the path (escaped), fasthttp drops what follows it"},
		// Queries: passed on as sent, or re-encoded as ReverseProxy does
		// when not plain (dropping what does not parse); never decoded.
		{name: "crlf encoded in query", raw: "GET /svc/x?a=%0d%0aX-Injected:%201 HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x?a=%0d%0aX-Injected:%201|")},
		{name: "semicolon in query", raw: "GET /svc/x?a=1;b=2&c=3 HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x?c=3|")},
		{name: "bad escape in query", raw: "GET /svc/x?a=%zz&c=3 HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x?c=3|")},
		{name: "raw quote in query", raw: "GET /svc/x?a=\"<>\" HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x?a=\"<>\"|")},
		{name: "userinfo in absolute-form", raw: "GET http://u:p@evil/svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x|"), fast: fast(bad),
			check: header("X-Forwarded-Host", "evil"), note: "harmless: net/http drops the userinfo (it goes nowhere), fasthttp refuses the target"},
		{name: "https absolute-form", raw: "GET https://evil/svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x|"), check: header("X-Forwarded-Proto", "http")},
		{name: "backslash path", raw: "GET /svc\\..\\admin HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(400)},
		{name: "encoded slash in routing", raw: "GET /svc%2F..%2Fadmin HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(400)},
		{name: "20 KiB query", raw: "GET /svc/x?" + strings.Repeat("a", 20<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/x?" + strings.Repeat("a", 20<<10) + "|"), fast: fast(tooLarge),
			note: "documented: a head over 16 KiB is 431 on fasthttp"},
		{name: "no leading slash", raw: "GET svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: bad},
		{name: "double slash", raw: "GET //svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: answered(404)},
		{name: "space in target", raw: "GET /svc/a b HTTP/1.1\r\nHost: a\r\n\r\n", net: bad},
		{name: "8 KiB path", raw: "GET /svc/" + strings.Repeat("a", 8<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/" + strings.Repeat("a", 8<<10) + "|")},
		{name: "20 KiB path", raw: "GET /svc/" + big + " HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("GET /base/" + big + "|"), fast: fast(tooLarge),
			note: "documented: a head over 16 KiB is 431 on fasthttp"},

		// Host.
		{name: "no host in http/1.1", raw: "GET /svc/x HTTP/1.1\r\n\r\n", net: bad},
		{name: "no host in http/1.0", raw: "GET /svc/x HTTP/1.0\r\n\r\n", net: okClosed("GET /base/x|"), check: header("X-Forwarded-Host", "")},
		{name: "two hosts", raw: "GET /svc/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", net: bad},
		{name: "host with space", raw: "GET /svc/x HTTP/1.1\r\nHost: a b\r\n\r\n", net: bad},
		{name: "host with userinfo", raw: "GET /svc/x HTTP/1.1\r\nHost: u@evil\r\n\r\n", net: bad},
		{name: "host with a path", raw: "GET /svc/x HTTP/1.1\r\nHost: evil/x\r\n\r\n", net: bad},
		{name: "host unclosed bracket", raw: "GET /svc/x HTTP/1.1\r\nHost: [::1\r\n\r\n", net: ok("GET /base/x|"), fast: fast(bad),
			check: header("X-Forwarded-Host", "[::1"),
			note:  "harmless: net/http's Host check lets it through, to X-Forwarded-Host only (the upstream's Host is its own); fasthttp refuses it"},
		{name: "host empty", raw: "GET /svc/x HTTP/1.1\r\nHost:\r\n\r\n", net: ok("GET /base/x|"), fast: fast(bad),
			check: header("X-Forwarded-Host", ""),
			note:  "harmless: RFC 9112 section 3.2 allows an empty Host (net/http), fasthttp refuses it"},

		// Hop-by-hop abuse: a field the client nominates in Connection is
		// dropped, but never what the proxy sets itself, nor the framing.
		{name: "connection nominates forwarding fields", raw: get + "Connection: X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, X-Forwarded-Prefix, Breakerbox-Circuit\r\nBreakerbox-Circuit: c\r\n\r\n",
			net: ok("GET /base/x|"), check: forwardedBy("a")},
		// fasthttp dropped the framing and failed the round trip, counted
		// against the upstream: fixed (keepNominated).
		{name: "connection nominates content-length", raw: post + "Connection: Content-Length\r\nContent-Length: 39\r\n\r\n" + smuggled,
			net: ok("POST /base/x|" + smuggled)},
		{name: "connection nominates content-length, streamed", raw: post + fmt.Sprintf("Connection: Content-Length\r\nContent-Length: %d\r\n\r\n", len(big)+len(smuggled)) + big + smuggled,
			net: ok("POST /base/x|" + big + smuggled)},
		// fasthttp dropped the Host, and X-Forwarded-Host with it: fixed.
		{name: "connection nominates host", raw: get + "Connection: Host\r\n\r\n", net: ok("GET /base/x|"), check: forwardedBy("a")},
		{name: "connection nominates transfer-encoding", raw: post + "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: okClosed("POST /base/x|hello"), fast: fast(ok("POST /base/x|hello")), note: "documented: net/http closes the connection after every chunked request (closeIfFramingHidden), fasthttp only after one that also had Content-Length"},
		// fasthttp's client sent a default Content-Type: fixed.
		{name: "connection nominates content-type", raw: post + "Connection: Content-Type\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
			net: ok("POST /base/x|hello")},
		// The client's forwarding fields are replaced, not appended to:
		// the proxy's client is on this host, its own claims are not
		// passed on (ReverseProxy's Rewrite does the same).
		{name: "client forwarding fields", raw: get + "X-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /evil\r\n\r\n",
			net: ok("GET /base/x|"), check: forwardedBy("a")},

		// Sizes.
		{name: "1,000 headers", raw: get + many.String() + "\r\n", net: ok("GET /base/x|"), check: func(t *testing.T, r seen) {
			if n := len(r.Header); n != 1000+4 {
				t.Errorf("the upstream got %d header fields, want 1,004", n)
			}
		}},
		{name: "15 KiB header", raw: get + "X-Big: " + strings.Repeat("a", 15<<10) + "\r\n\r\n", net: ok("GET /base/x|")},
		{name: "20 KiB header", raw: get + "X-Big: " + big + "\r\n\r\n", net: ok("GET /base/x|"), fast: fast(tooLarge),
			note: "documented: a head over 16 KiB is 431 on fasthttp"},

		// Versions, methods, pipelining.
		{name: "http/1.0", raw: "GET /svc/x HTTP/1.0\r\nHost: a\r\n\r\n", net: okClosed("GET /base/x|")},
		{name: "http/1.0 keep-alive", raw: "GET /svc/x HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
			net: okClosed("GET /base/x|"), fast: fast(ok("GET /base/x|")),
			note: "harmless: net/http cannot tell an HTTP/1.0 request that came with Transfer-Encoding (its server drops the header), so it closes after every HTTP/1.0 request (closeIfFramingHidden)"},
		{name: "http/0.9", raw: "GET /svc/x\r\n\r\n", net: bad},
		{name: "http/2 preface", raw: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", net: answeredClosed(404), fast: fast(bad),
			note: "harmless: both refuse it and close"},
		{name: "http/1.2", raw: "GET /svc/x HTTP/1.2\r\nHost: a\r\n\r\n", net: ok("GET /base/x|"), fast: fast(okClosed("GET /base/x|")),
			note: "harmless: fasthttp keeps only HTTP/1.1 connections alive"},
		{name: "lower-case version", raw: "GET /svc/x http/1.1\r\nHost: a\r\n\r\n", net: bad},
		{name: "lower-case method", raw: "get /svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: ok("get /base/x|")},
		{name: "method not a token", raw: "G@T /svc/x HTTP/1.1\r\nHost: a\r\n\r\n", net: bad},
		{name: "leading empty line", raw: "\r\n" + get + "\r\n", net: bad, fast: fast(ok("GET /base/x|")),
			note: "harmless: RFC 9112 section 2.2 lets a server skip an empty line before the request-line (fasthttp) or refuse it (net/http)"},
		{name: "pipelined", raw: "GET /svc/one HTTP/1.1\r\nHost: a\r\n\r\nGET /svc/two HTTP/1.1\r\nHost: a\r\n\r\n",
			net: want{answers: []int{200, 200}, up: []string{"GET /base/one|", "GET /base/two|"}}},
		{name: "pipelined after a body", raw: "POST /svc/one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /svc/two HTTP/1.1\r\nHost: a\r\n\r\n",
			net: want{answers: []int{200, 200}, up: []string{"POST /base/one|hello", "GET /base/two|"}}},
		{name: "expect 100-continue", raw: post + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", net: ok("POST /base/x|hello")},
		{name: "get with a body", raw: get + "Content-Length: 39\r\n\r\n" + smuggled, net: ok("GET /base/x|" + smuggled)},
		{name: "big body then pipelined", raw: post + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(big)) + big + "GET /svc/second HTTP/1.1\r\nHost: a\r\n\r\n",
			net: want{answers: []int{200, 200}, up: []string{"POST /base/x|" + big, "GET /base/second|"}}},

		{name: "expect, circuit open", raw: post + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", open: true,
			net: want{answers: []int{503}, closed: true, rejected: 1}, fast: fast(want{answers: []int{503}, rejected: 1}), note: expectNote},
		{name: "body, circuit open, then pipelined", raw: post + "Content-Length: 5\r\n\r\nhelloGET /svc/second HTTP/1.1\r\nHost: a\r\n\r\n", open: true,
			net: want{answers: []int{503, 503}, rejected: 2}},
		// The server drains an unread body of up to 256 KiB (net/http)
		// to read the next request; past that it closes.
		{name: "big body, circuit open, then pipelined", raw: post + fmt.Sprintf("Content-Length: %d\r\n\r\n", 300<<10) + strings.Repeat("a", 300<<10) + "GET /svc/second HTTP/1.1\r\nHost: a\r\n\r\n", open: true,
			net: want{answers: []int{503}, closed: true, rejected: 1}},
		{name: "body, unknown service, then pipelined", raw: "POST /nope/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /svc/second HTTP/1.1\r\nHost: a\r\n\r\n",
			net: want{answers: []int{404, 200}, up: []string{"GET /base/second|"}}},
		{name: "expect, unknown service", raw: "POST /nope/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
			net: answeredClosed(404), fast: fast(answered(404)), note: expectNote},

		// Upgrades: the fasthttp engine hands the connection to net/http
		// (handOver), with what it had read of it. The upstream here does
		// not switch, so the connection goes on as HTTP.
		{name: "upgrade then pipelined", raw: get + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /svc/second HTTP/1.1\r\nHost: a\r\n\r\n",
			net: want{answers: []int{200, 200}, up: []string{"GET /base/x|", "GET /base/second|"}}},
		// fasthttp had read the body before handing the connection over,
		// and net/http waited for it for ever: fixed (handedBody).
		{name: "upgrade with a body", raw: post + "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello",
			net: ok("POST /base/x|hello")},
		{name: "upgrade with a body, streamed, then pipelined", raw: post + fmt.Sprintf("Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: %d\r\n\r\n", len(big)) + big + "GET /svc/second HTTP/1.1\r\nHost: a\r\n\r\n",
			net: want{answers: []int{200, 200}, up: []string{"POST /base/x|" + big, "GET /base/second|"}}},
		{name: "upgrade with a chunked body", raw: chunked[:len(chunked)-2] + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			net: okClosed("POST /base/x|hello")}, // net/http's rule for chunked requests, on both engines (handed over)
		{name: "upgrade cl.te", raw: post + "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			net: okClosed("POST /base/x|")},
	}
}

// forwardedBy checks the forwarding fields the proxy sets for a client
// that sent Host host.
func forwardedBy(host string) func(*testing.T, seen) {
	return func(t *testing.T, r seen) {
		for k, v := range map[string]string{"X-Forwarded-Host": host, "X-Forwarded-Proto": "http", "X-Forwarded-Prefix": "/svc"} {
			header(k, v)(t, r)
		}
	}
}
