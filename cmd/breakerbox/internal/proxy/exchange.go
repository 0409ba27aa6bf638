package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/httpbreaker"
)

// exchange is one forwarded request's state, from ServeHTTP through the
// Rewrite hook, the upstream transport and the error handler. It travels as
// the request's context (it is one, wrapping the client's): ReverseProxy
// hands its hooks nothing else per request, and being the context itself
// costs one allocation where context.WithValue plus a deadline cost several.
type exchange struct {
	context.Context
	route         *route
	ticket        breaker.Ticket
	path, rawPath string // to forward, below the route's prefix
	body          clientBody
	reported      bool // the ticket has been reported
	status        int  // final status of the answer, for metrics
	fault         fault
	start         time.Time // the request's arrival

	w     http.ResponseWriter
	trace httptrace.ClientTrace // GotConn; Got1xxResponse on forward's path
	conn  net.Conn              // the upstream connection, from GotConn

	mu            sync.Mutex // 1xx answers (the transport's goroutine) and the end of the round trip
	roundTripDone bool
}

// gotConn notes the request's upstream connection (for hopConn).
func (x *exchange) gotConn(info httptrace.GotConnInfo) { x.conn = info.Conn }

// got1xx passes an informational answer on to the client, until the round
// trip has returned.
func (x *exchange) got1xx(code int, header textproto.MIMEHeader) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.roundTripDone {
		return nil
	}
	h := x.w.Header()
	for k, v := range header {
		h[k] = v
	}
	x.w.WriteHeader(code)
	clear(h) // WriteHeader does not, for 1xx
	return nil
}

type exchangeKey struct{}

func (x *exchange) Value(key any) any {
	if key == (exchangeKey{}) {
		return x
	}
	return x.Context.Value(key)
}

func exchangeOf(r *http.Request) *exchange { return r.Context().Value(exchangeKey{}).(*exchange) }

// finish reports an outcome the transport never saw (ReverseProxy refused
// the request before the round trip, or a panic) and records the metrics.
func (x *exchange) finish(start time.Time) {
	if !x.reported {
		x.reported = true
		x.ticket.Report(breaker.Ignored)
	}
	x.route.metrics.observe(x.status, time.Since(start))
}

// clientBody is the client's request body as the upstream transport reads
// it, remembering a read error: an error there is the client's fault (a
// malformed chunked body, a stalled upload cut by the listener's read
// timeout, a disconnect), not the upstream's.
type clientBody struct {
	rc     io.ReadCloser
	failed atomic.Bool // read by the round trip while the transport's writer may still read
	err    error       // written once, before failed
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && !b.failed.Load() {
		b.err = err
		b.failed.Store(true)
	}
	return n, err
}

// Close does nothing: the transport closes the body it sends, even when
// it never connects, and the client's body is the server's to close
// (ReverseProxy wraps it likewise).
func (b *clientBody) Close() error { return nil }

// fault is why a round trip returned no response, in the order it is
// decided: whose fault it was decides whether the breaker counts it. The
// kinds up to faultLocal are not the upstream's (ignored); the others are
// (failures).
type fault uint8

const (
	faultNone       fault = iota
	faultClientBody       // the client's body could not be read: 400 or 408, ignored
	faultClientGone       // the client cancelled: 499, ignored
	faultLocal            // this host ran out of a resource (fds, ports, memory): 503, ignored
	faultTimeout          // the upstream did not answer in time: 504, counted
	faultUpstream         // refused, reset, DNS, TLS…: 502, counted
)

func (x *exchange) classify(err error) fault {
	switch {
	case x.body.failed.Load():
		// Before the cancellation check: a failed body read (a read
		// timeout) cancels the request's context too.
		return faultClientBody
	case x.Context.Err() == context.Canceled:
		return faultClientGone
	case isLocalFault(err):
		return faultLocal
	case isTimeout(err):
		return faultTimeout
	}
	return faultUpstream
}

// isLocalFault reports whether err is this host running out of a resource
// rather than the upstream failing: counting it would open the circuit of a
// healthy upstream for every client.
func isLocalFault(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	// EADDRNOTAVAIL when connecting: no local port left to connect from.
	var oe *net.OpError
	return errors.Is(err, syscall.EADDRNOTAVAIL) && errors.As(err, &oe) && oe.Op == "dial"
}

// upstream is the proxy's transport: the round trip through the route's
// transport, its outcome reported on the ticket ServeHTTP took.
type upstream struct{ s *Server }

func (u upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	x := exchangeOf(req)
	x.reported = true
	ok := false
	defer func() {
		if !ok { // the transport panicked: count it, keep panicking
			x.ticket.Report(breaker.Failure)
		}
	}()
	resp, err := x.route.transport.RoundTrip(req)
	ok = true
	x.observe(req, resp, err)
	if err != nil {
		x.fault = x.classify(err)
		if x.fault <= faultLocal {
			x.ticket.Report(breaker.Ignored)
		} else {
			x.ticket.Report(breaker.Failure)
		}
		return nil, err
	}
	x.ticket.Report(httpbreaker.DefaultClassifier(req, resp, nil))
	x.status = resp.StatusCode // the final status: 1xx answers went by in ClientTrace
	if x.status >= 500 {
		u.s.upstreamFaults.fault(x.route, "upstream answered 5xx", slog.Int("status", x.status))
	}
	if hc, ok := x.conn.(*hopConn); ok && resp.Close {
		hc.strip(resp.Header)
	}
	renameBreakerboxHeaders(resp.Header)
	return resp, nil
}

// renameBreakerboxHeaders keeps an upstream's Breakerbox-* headers (another
// breakerbox in front of it, or a forgery) from passing for this proxy's
// own: a 503 with Breakerbox-State: open must mean that this proxy's circuit
// is open. They reach the client as Upstream-Breakerbox-*.
func renameBreakerboxHeaders(h http.Header) {
	for k, v := range h {
		if strings.HasPrefix(k, "Breakerbox-") {
			delete(h, k)
			h["Upstream-"+k] = v
		}
	}
}

// proxyError answers a request the upstream did not: see fault.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	s.answerFault(w, exchangeOf(r), err)
}

// answerFault answers, on either engine, a request whose round trip
// failed with err (x.fault says why).
func (s *Server) answerFault(w http.ResponseWriter, x *exchange, err error) {
	f := x.fault
	if f == faultNone { // ReverseProxy refused the request before the round trip
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		x.status = http.StatusBadRequest
		return
	}
	rt := x.route
	w.Header()["Breakerbox-Circuit"] = rt.circuitHeader
	switch f {
	case faultClientGone:
		// Nobody reads this answer.
		x.status = 499
		w.WriteHeader(x.status)
	case faultClientBody:
		x.status = http.StatusBadRequest
		msg := "could not read the request body: " + x.body.err.Error()
		if isTimeout(x.body.err) {
			x.status, msg = http.StatusRequestTimeout, "the request body did not arrive in time"
		}
		writeJSON(w, x.status, map[string]any{"error": msg, "circuit": rt.circuit})
	case faultLocal:
		s.localFaults.log(s.log, rt.circuit, err)
		x.status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
		writeJSON(w, x.status, map[string]any{"error": "breakerbox is out of local resources (see its log); the upstream was not counted as failing", "circuit": rt.circuit})
	case faultTimeout:
		s.upstreamFaults.fault(rt, "upstream timeout", slog.String("error", err.Error()))
		x.status = http.StatusGatewayTimeout
		writeJSON(w, x.status, map[string]any{
			"error": "upstream timeout", "circuit": rt.circuit, "timeout_seconds": rt.timeout.Seconds(),
		})
	default:
		// The detail (addresses, resolver and TLS messages) is for the
		// operator's log, not for clients.
		s.upstreamFaults.fault(rt, "upstream unreachable", slog.String("error", err.Error()))
		x.status = http.StatusBadGateway
		writeJSON(w, x.status, map[string]any{"error": "upstream unreachable", "circuit": rt.circuit})
	}
}

// burstLog logs local faults at ERROR at most once per burstInterval,
// saying how many went unlogged since the last line: when the process runs
// out of file descriptors every request fails, and one line per request
// would bury the cause.
type burstLog struct {
	mu    sync.Mutex
	burst burst
}

const burstInterval = 10 * time.Second

func (b *burstLog) log(log *slog.Logger, circuit string, err error) {
	b.mu.Lock()
	unlogged, ok := b.burst.allow(time.Now(), burstInterval)
	b.mu.Unlock()
	if !ok {
		return
	}
	log.Error("local resource exhausted: requests answered 503 and not counted against their upstreams",
		slog.String("circuit", circuit), slog.String("error", err.Error()),
		slog.Int("unlogged_before", unlogged), slog.Duration("next_log_in", burstInterval))
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) && te.Timeout()
}
