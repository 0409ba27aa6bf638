// Package proxy is breakerbox's egress proxy: it forwards /<service>/... to
// the service's configured upstream through the service's circuit breaker
// (one per region for per-region services), and answers at once with 503 and
// Retry-After while the circuit is open. It also serves the admin listener:
// the dashboard, the JSON API and Prometheus metrics (see Admin).
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerprom"
	"github.com/breakerbox/breakerbox/config"
	"github.com/breakerbox/breakerbox/httpbreaker"
)

// Options tune a Server beyond its config.
type Options struct {
	// Logger receives transitions, manual actions and proxy errors. nil
	// means slog.Default().
	Logger *slog.Logger
	// Clock is the breakers' clock. nil means the system clock.
	Clock breaker.Clock
	// Transport makes the upstream round trips. nil means a clone of
	// http.DefaultTransport tuned for a sidecar (see newTransport). An
	// *http.Transport is cloned once per distinct service timeout, which it
	// then enforces (see Server.transportFor); any other RoundTripper is used
	// as is and must bound its round trips itself.
	Transport http.RoundTripper
	// Sync, if set, shares every circuit with the other replicas of a fleet
	// (a *redisstate.Fleet for state: redis://).
	Sync breaker.Sync
	// Collectors are registered on /metrics beside the proxy's own (e.g. the
	// fleet's health).
	Collectors []prometheus.Collector
}

// Server is the proxy and its admin API. Create it with New, serve Handler
// on the proxy listener and Admin on the admin listener.
type Server struct {
	log      *slog.Logger
	registry *breaker.Registry
	table    atomic.Pointer[table]
	rp       *httputil.ReverseProxy
	history  *history
	metrics  *metrics
	promReg  *prometheus.Registry
	reloadMu sync.Mutex

	base         http.RoundTripper
	transportsMu sync.Mutex
	transports   map[time.Duration]http.RoundTripper // one per distinct timeout, kept across reloads with their connections
	localFaults  burstLog
	hop          hopNames
}

// New builds a Server for cfg.
func New(cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{log: opts.Logger, history: newHistory(200), base: opts.Transport,
		transports: map[time.Duration]http.RoundTripper{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.base == nil {
		s.base = newTransport()
	}
	s.metrics = newMetrics()
	t, err := newTable(cfg, s.metrics, s.transportFor)
	if err != nil {
		return nil, err
	}
	s.table.Store(t)
	base := breaker.Config{
		Clock:          opts.Clock,
		Logger:         s.log,
		CountSuccesses: true, // a proxied request costs microseconds; exact counts are worth an atomic add
		OnTransition:   s.history.add,
		Sync:           opts.Sync,
	}
	s.registry, err = breaker.NewRegistry(breaker.RegistryConfig{
		Default: base,
		Configure: func(key string, c breaker.Config) breaker.Config {
			r := s.table.Load().circuits[key]
			if r == nil { // unreachable: keys come from the table
				return c
			}
			c = r.breakerConfig(c)
			c.Logger = c.Logger.With(slog.String("service", r.service))
			if r.region != "" {
				c.Logger = c.Logger.With(slog.String("region", r.region))
			}
			return c
		},
	})
	if err != nil {
		return nil, err
	}
	s.rp = &httputil.ReverseProxy{
		Rewrite:      s.rewrite,
		Transport:    upstream{s},
		ErrorHandler: s.proxyError,
		BufferPool:   bufferPool{},
		// FlushInterval 0: streaming responses (event streams, unknown
		// length) are flushed on every write anyway; others are buffered.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.promReg = prometheus.NewRegistry()
	s.promReg.MustRegister(breakerprom.NewCollector(s.registry), s.metrics,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	for _, c := range opts.Collectors {
		if err := s.promReg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy: Options.Collectors: %w", err)
		}
	}
	// Create every configured circuit up front so the dashboard and metrics
	// list them before their first request.
	for key := range t.circuits {
		s.registry.Get(key)
	}
	return s, nil
}

// newTransport is http.DefaultTransport tuned for a sidecar that sends many
// concurrent requests to few hosts.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Keep the connections of a busy upstream (the default keeps 2 per host,
	// and at most 100 in all, and redials the rest on every burst).
	t.MaxIdleConnsPerHost = 256
	t.MaxIdleConns = 0
	// Pass bodies through as the upstream encoded them. Left on, the
	// Transport asks for gzip when the client did not and decompresses the
	// answer itself: work per request, and the client gets a body the
	// upstream did not send.
	t.DisableCompression = true
	return t
}

// transportFor returns the transport of the services whose timeout is d.
// For an *http.Transport base it is a clone that bounds, each by d, the
// connection set-up (TCP dial, TLS handshake) and the wait for the response
// headers once the whole request is written (ResponseHeaderTimeout). So the
// time spent waiting for a client's slow upload never counts against the
// upstream; a response body streams for as long as the upstream keeps
// sending and the client keeps reading (the listener's timeouts bound that).
// Bounding in the transport instead of with a deadline on each request's
// context also spares every request a timer and a context.
func (s *Server) transportFor(d time.Duration) http.RoundTripper {
	s.transportsMu.Lock()
	defer s.transportsMu.Unlock()
	if t, ok := s.transports[d]; ok {
		return t
	}
	var rt http.RoundTripper = s.base
	if base, ok := s.base.(*http.Transport); ok && d > 0 {
		t := base.Clone()
		dial := t.DialContext
		if dial == nil {
			dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
		}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			// Once per new connection, not per request.
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &scanConn{Conn: c, hop: &s.hop}, nil
		}
		if t.TLSHandshakeTimeout == 0 || t.TLSHandshakeTimeout > d {
			t.TLSHandshakeTimeout = d
		}
		t.ResponseHeaderTimeout = d
		rt = t
	}
	s.transports[d] = rt
	return rt
}

// Registry returns the registry of the server's breakers.
func (s *Server) Registry() *breaker.Registry { return s.registry }

// Config returns the configuration in force.
func (s *Server) Config() *config.Config { return s.table.Load().cfg }

// Reload swaps in cfg atomically. Circuits whose service, region and breaker
// settings are unchanged keep their breaker and its state; changed ones start
// afresh CLOSED with the new settings; removed ones are dropped.
func (s *Server) Reload(cfg *config.Config) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	nt, err := newTable(cfg, s.metrics, s.transportFor)
	if err != nil {
		return err
	}
	old := s.table.Swap(nt)
	var kept, changed, removed int
	for key, or := range old.circuits {
		nr, ok := nt.circuits[key]
		switch {
		case !ok:
			s.registry.Remove(key)
			removed++
		case nr.settings != or.settings:
			s.registry.Remove(key)
			changed++
		default:
			kept++
		}
	}
	for key := range nt.circuits {
		s.registry.Get(key)
	}
	s.log.Info("config reloaded", slog.Int("circuits_kept", kept), slog.Int("circuits_changed", changed),
		slog.Int("circuits_removed", removed), slog.Int("circuits", len(nt.circuits)))
	return nil
}

// ServeHTTP is the proxy: /<service>/<rest> or /<service>/<region>/<rest>.
//
// The breaker is asked before any proxy machinery runs: while the circuit is
// open — during a retry storm, when it matters most — a rejection costs a map
// lookup, an atomic load and a prebuilt answer (see reject).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := s.table.Load()
	rt, path, rawPath, svc, err := t.resolve(r.URL)
	switch {
	case err != nil:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	case rt == nil:
		s.notFound(w, r, t, svc)
		return
	}
	b, err := s.registry.GetE(rt.circuit)
	if err != nil { // unreachable: the config was validated
		s.log.Error("no breaker for circuit", slog.String("circuit", rt.circuit), slog.String("error", err.Error()))
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "breakerbox has no breaker for this circuit (see its log)", "circuit": rt.circuit})
		return
	}
	ticket, err := b.Allow()
	if err != nil {
		s.reject(w, rt, err)
		rt.metrics.observe(http.StatusServiceUnavailable, time.Since(start))
		return
	}
	x := &exchange{Context: r.Context(), route: rt, ticket: ticket, path: path, rawPath: rawPath}
	defer x.finish(start)
	out := r.WithContext(x)
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		x.body.rc = r.Body
		out.Body = &x.body
	}
	s.rp.ServeHTTP(w, out)
}

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

func (b *clientBody) Close() error { return b.rc.Close() }

// fault is why a round trip returned no response, in the order it is
// decided: whose fault it was decides whether the breaker counts it.
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
	if resp.Close {
		u.s.hop.strip(resp.Header)
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

func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In)
	pr.Out.URL.Path, pr.Out.URL.RawPath = x.path, x.rawPath
	pr.SetURL(x.route.target) // joins the base path (escaped, if either is), rewrites Host
	// As pr.SetXForwarded (ReverseProxy has deleted the client's
	// X-Forwarded-* before Rewrite), with the values' slices reused.
	h := pr.Out.Header
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		h["X-Forwarded-For"] = x.route.forwardedFor.get(ip)
	}
	h["X-Forwarded-Host"] = x.route.forwardedHost.get(pr.In.Host)
	if pr.In.TLS == nil {
		h["X-Forwarded-Proto"] = protoHTTP
	} else {
		h["X-Forwarded-Proto"] = protoHTTPS
	}
	h["X-Forwarded-Prefix"] = x.route.prefixHeader
}

var protoHTTP, protoHTTPS = []string{"http"}, []string{"https"}

// headerValue reuses the slice of the last value it was asked for: a
// sidecar's clients are few (often one address, one Host), so a header
// slice allocated per request would almost always be a copy of the last.
type headerValue struct{ last atomic.Pointer[[]string] }

func (c *headerValue) get(v string) []string {
	if p := c.last.Load(); p != nil && (*p)[0] == v {
		return *p
	}
	s := []string{v}
	c.last.Store(&s)
	return s
}

// proxyError answers a request the upstream did not: see fault.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r)
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
		x.status = http.StatusGatewayTimeout
		writeJSON(w, x.status, map[string]any{
			"error": "upstream timeout", "circuit": rt.circuit, "timeout_seconds": rt.timeout.Seconds(),
		})
	default:
		// The detail (addresses, resolver and TLS messages) is for the
		// operator's log, not for clients.
		s.log.Warn("upstream error", slog.String("circuit", rt.circuit), slog.String("error", err.Error()))
		x.status = http.StatusBadGateway
		writeJSON(w, x.status, map[string]any{"error": "upstream unreachable", "circuit": rt.circuit})
	}
}

// burstLog logs local faults at ERROR at most once per burstInterval,
// saying how many went unlogged since the last line: when the process runs
// out of file descriptors every request fails, and one line per request
// would bury the cause.
type burstLog struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

const burstInterval = 10 * time.Second

func (b *burstLog) log(log *slog.Logger, circuit string, err error) {
	b.mu.Lock()
	now := time.Now()
	if now.Before(b.next) {
		b.suppressed++
		b.mu.Unlock()
		return
	}
	b.next = now.Add(burstInterval)
	suppressed := b.suppressed
	b.suppressed = 0
	b.mu.Unlock()
	log.Error("local resource exhausted: requests answered 503 and not counted against their upstreams",
		slog.String("circuit", circuit), slog.String("error", err.Error()),
		slog.Int("unlogged_before", suppressed), slog.Duration("next_log_in", burstInterval))
}

// rejection is a circuit's prebuilt open answer for one state and one
// Retry-After value; it changes at most once a second.
type rejection struct {
	state      breaker.State
	secs       int
	retryAfter []string
	body       []byte // the server adds Content-Length, after the other headers as before
}

var (
	jsonContentType = []string{"application/json"}
	stateOpenHeader = []string{"open"}
)

// reject answers 503 for a call the breaker refused: Retry-After (seconds
// until a probe is allowed), Breakerbox-Circuit, Breakerbox-State: open and
// a small JSON body. The answer is prebuilt per route and reused while its
// Retry-After holds, so a rejection allocates nothing here.
func (s *Server) reject(w http.ResponseWriter, rt *route, err error) {
	oe, ok := err.(*breaker.OpenError)
	if !ok && !errors.As(err, &oe) { // unreachable: Allow refuses with *OpenError
		oe = &breaker.OpenError{Name: rt.circuit, State: breaker.Open}
	}
	secs := retryAfterSeconds(rt, oe)
	rj := rt.rejection.Load()
	if rj == nil || rj.secs != secs || rj.state != oe.State {
		rj = newRejection(rt, oe.State, secs)
		rt.rejection.Store(rj)
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Retry-After"] = rj.retryAfter
	h["Breakerbox-Circuit"] = rt.circuitHeader
	h["Breakerbox-State"] = stateOpenHeader
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write(rj.body)
}

// retryAfterSeconds is the Retry-After of a rejection: the time until a probe
// is allowed, rounded up, at least 1. A forced-open circuit has no such
// time (an operator closes it); it answers the circuit's open timeout, the
// pace at which an automatic circuit would try again, instead of inviting a
// retry storm every second.
func retryAfterSeconds(rt *route, oe *breaker.OpenError) int {
	d := oe.RetryAfter()
	if oe.State == breaker.ForcedOpen {
		d = rt.settings.OpenTimeout.Duration
	}
	return max(int(math.Ceil(d.Seconds())), 1)
}

func newRejection(rt *route, state breaker.State, secs int) *rejection {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetIndent("", "  ")
	enc.Encode(map[string]any{
		"error": "circuit open", "circuit": rt.circuit, "state": state.String(), "retry_after_seconds": secs,
	})
	return &rejection{state: state, secs: secs, body: body.Bytes(), retryAfter: []string{strconv.Itoa(secs)}}
}

// bufferPool recycles the 32 KiB buffers ReverseProxy copies bodies through;
// without it every response allocates and zeroes one.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte  { return buffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) { buffers.Put((*[32 << 10]byte)(b)) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, t *table, svc *service) {
	if svc != nil {
		regions := make([]string, 0, len(svc.regions))
		for k := range svc.regions {
			regions = append(regions, k)
		}
		sort.Strings(regions)
		writeJSON(w, http.StatusNotFound, map[string]any{
			"error":   fmt.Sprintf("unknown region for service %q: address it as /%s/<region>/...", svc.name, svc.name),
			"regions": regions,
		})
		return
	}
	names := make([]string, 0, len(t.services))
	for k := range t.services {
		names = append(names, k)
	}
	sort.Strings(names)
	writeJSON(w, http.StatusNotFound, map[string]any{
		"error":    fmt.Sprintf("unknown service in %q: address a service as /<service>/... (breakerbox forwards only to configured upstreams)", r.URL.Path),
		"services": names,
	})
}

// writeJSON answers v as indented JSON, for people reading small answers.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writeCompactJSON answers v as compact JSON, for large answers read by
// programs: indenting 10,000 circuits cost more than encoding them.
func writeCompactJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
