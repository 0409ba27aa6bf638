// Package proxy is breakerbox's egress proxy: it forwards /<service>/... to
// the service's configured upstream through the service's circuit breaker
// (one per region for per-region services), and answers at once with 503 and
// Retry-After while the circuit is open. It also serves the admin listener:
// the dashboard, the JSON API and Prometheus metrics (see Admin).
package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerprom"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
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
	// as is and must bound its round trips itself. The fasthttp engine
	// (FastServer) forwards with its own client: it takes only an
	// *http.Transport's TLSClientConfig from here.
	Transport http.RoundTripper
	// Sync, if set, shares every circuit with the other replicas of a fleet
	// (a *redisstate.Fleet for state: redis://).
	Sync breaker.Sync
	// Collectors are registered on /metrics beside the proxy's own (e.g. the
	// fleet's health).
	Collectors []prometheus.Collector
	// Replica names this process in the API and in its transitions ("" for
	// the host name).
	Replica string
	// Redis, if set (state: redis://), keeps the transitions in a capped
	// stream shared by the fleet, that outlives restarts (see
	// RedisHistory), and shares each replica's rolling totals with the fleet
	// (GET /api/fleet, fleetstats.go). Close stops what it starts. Without
	// it, transitions live in memory only (the last historySize).
	Redis redis.UniversalClient
	// RedisPrefix starts the keys in Redis; "" means "breakerbox:", the
	// fleet's (redisstate.Options.Prefix).
	RedisPrefix string
	// Degraded, if set, reports whether this replica has lost the fleet's
	// Redis (redisstate.Fleet.Stats().Degraded); the fleet view shows it.
	Degraded func() bool
}

// Server is the proxy and its admin API. Create it with New, serve Handler
// on the proxy listener and Admin on the admin listener.
type Server struct {
	log      *slog.Logger
	registry *breaker.Registry
	table    atomic.Pointer[table]
	rp       *httputil.ReverseProxy
	history  *history
	translog *transitionLog
	metrics  *metrics
	promReg  *prometheus.Registry   // every metric but the breakers' and the routes'
	breakers *breakerprom.Collector // served beside promReg (see Admin)
	reloadMu sync.Mutex

	base           http.RoundTripper
	transportsMu   sync.Mutex
	transports     map[time.Duration]http.RoundTripper // one per distinct timeout, kept across reloads with their connections
	fastClients    map[string]*fasthttp.HostClient     // the fasthttp engine's, per upstream and timeout (fastClient); under transportsMu
	localFaults    burstLog
	upstreamFaults *upstreamLog
	health         Health        // set by the process serving the listeners (health.go)
	fleetHealth    fleetHealth   // opts.Sync when it reports its health, else nil
	openings       fleetOpenings // opts.Sync when it says who made its transitions, else nil
	stats          statsTable
	started        time.Time
	replica        string
	closeOnce      sync.Once
	store          transitionStore
	fleetStats     *fleetStats
}

// New builds a Server for cfg.
func New(cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{log: opts.Logger, history: newHistory(historySize), base: opts.Transport, started: time.Now(),
		transports: map[time.Duration]http.RoundTripper{}, fastClients: map[string]*fasthttp.HostClient{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.fleetHealth, _ = opts.Sync.(fleetHealth)
	if s.base == nil {
		s.base = newTransport()
	}
	s.replica = opts.Replica
	if s.replica == "" {
		s.replica, _ = os.Hostname()
	}
	s.metrics = newMetrics()
	s.upstreamFaults = newUpstreamLog(s.log, opts.Clock)
	t, err := newTable(cfg, s.metrics, s.transportFor)
	if err != nil {
		return nil, err
	}
	s.stats.attach(t)
	s.table.Store(t)
	s.openings, _ = opts.Sync.(fleetOpenings)
	s.translog = newTransitionLog(s.log, func(circuit string) *route { return s.table.Load().circuits[circuit] })
	s.translog.replica = s.replica
	base := breaker.Config{
		Clock: opts.Clock,
		// The sidecar logs transitions by outage episode (transitionLog),
		// not each state change as the breakers would.
		Logger:         slog.New(slog.DiscardHandler),
		CountSuccesses: true, // a proxied request costs microseconds; exact counts are worth an atomic add
		OnTransition: func(t breaker.Transition) {
			r := s.table.Load().circuits[t.Name]
			var ev []Outcome
			if t.To == breaker.Open {
				ev = s.evidenceOf(t, r)
			}
			s.translog.record(t, s.decidedBy(t), ev)
			s.onTransition(t, ev)
		},
		Sync: opts.Sync,
	}
	s.registry, err = breaker.NewRegistry(breaker.RegistryConfig{
		Default: base,
		Configure: func(key string, c breaker.Config) breaker.Config {
			r := s.table.Load().circuits[key]
			if r == nil { // unreachable: keys come from the table
				return c
			}
			return r.breakerConfig(c)
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
	s.breakers = breakerprom.NewCollector(s.registry)
	s.promReg = prometheus.NewRegistry()
	s.promReg.MustRegister(
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
	if opts.Redis != nil {
		prefix := opts.RedisPrefix
		if prefix == "" {
			prefix = "breakerbox:"
		}
		s.store = NewRedisHistory(opts.Redis, prefix, 0, s.log)
		s.fleetStats = newFleetStats(s, opts.Redis, prefix, opts.Degraded)
	}
	return s, nil
}

// Close stops the work Options.Redis started, after writing the queued
// transitions (for at most 2 s). The Server must not be used afterwards;
// closing it again does nothing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.fleetStats != nil {
			s.fleetStats.close()
		}
		if h, ok := s.store.(*RedisHistory); ok {
			h.Close()
		}
	})
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
			return &hopConn{Conn: c}, nil
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

// CircuitCount is how many circuits the configuration in force has,
// without building their snapshots as Circuits does.
func (s *Server) CircuitCount() int { return len(s.table.Load().circuits) }

// Config returns the configuration in force.
func (s *Server) Config() *config.Config { return s.table.Load().cfg }

// ServeHTTP is the proxy: /<service>/<rest> or /<service>/<region>/<rest>.
//
// The breaker is asked before any proxy machinery runs: while the circuit is
// open — during a retry storm, when it matters most — a rejection costs a map
// lookup, an atomic load and a prebuilt answer (see reject).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	closeIfFramingHidden(w, r)
	t := s.table.Load()
	rt, path, rawPath, svc, err := t.resolve(r.URL)
	switch {
	case err != nil:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		return
	case rt == nil:
		s.notFound(w, r.URL.Path, t, svc)
		return
	}
	b, err := s.registry.Get(rt.circuit)
	if err != nil { // unreachable: the config was validated
		s.log.Error("no breaker for circuit", slog.String("circuit", rt.circuit), slog.String("error", err.Error()))
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "breakerbox has no breaker for this circuit (see its log)", "circuit": rt.circuit})
		return
	}
	ticket, err := b.AllowContext(r.Context())
	if err != nil && r.Context().Err() != nil {
		// The client left while the fleet was asked for a probe's lease.
		rt.metrics.observe(499, time.Since(start))
		return
	}
	if err != nil {
		s.reject(w, rt, err)
		rt.stats.rejected(start)
		rt.metrics.observeRejection(time.Since(start))
		return
	}
	x := &exchange{Context: r.Context(), route: rt, ticket: ticket, path: path, rawPath: rawPath, w: w, start: start}
	defer x.finish(start)
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		x.body.rc = r.Body
	}
	x.trace.GotConn = x.gotConn
	if plain(r) {
		x.trace.Got1xxResponse = x.got1xx
		s.forward(w, r, x)
		return
	}
	out := r.WithContext(httptrace.WithClientTrace(x, &x.trace))
	if x.body.rc != nil {
		out.Body = &x.body
	}
	s.rp.ServeHTTP(w, out)
}

// rewrite is ReverseProxy's, for the requests forward leaves to it.
func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In)
	pr.Out.URL.Path, pr.Out.URL.RawPath = x.path, x.rawPath
	pr.SetURL(x.route.target)
	x.setForwarded(pr.Out.Header, pr.In)
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

// bufferPool recycles the 32 KiB buffers ReverseProxy copies bodies through;
// without it every response allocates and zeroes one.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte  { return buffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) { buffers.Put((*[32 << 10]byte)(b)) }

func (s *Server) notFound(w http.ResponseWriter, path string, t *table, svc *service) {
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
		"error":    fmt.Sprintf("unknown service in %q: address a service as /<service>/... (breakerbox forwards only to configured upstreams)", path),
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
