// Package proxy is breakerbox's egress proxy: it forwards /<service>/... to
// the service's configured upstream through the service's circuit breaker
// (one per region for per-region services), and answers at once with 503 and
// Retry-After while the circuit is open. It also serves the admin listener:
// the dashboard, the JSON API and Prometheus metrics (see Admin).
package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// http.DefaultTransport.
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
}

type ctxKey struct{}

// New builds a Server for cfg.
func New(cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{log: opts.Logger, history: newHistory(200)}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.metrics = newMetrics()
	t, err := newTable(cfg, s.metrics)
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
	next := opts.Transport
	if next == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// A sidecar sends many concurrent requests to few hosts: keep their
		// connections (the default keeps 2 per host and redials the rest).
		t.MaxIdleConnsPerHost = 256
		next = t
	}
	rt := httpbreaker.New(s.registry, httpbreaker.WithTransport(next), httpbreaker.WithKey(func(r *http.Request) string {
		return r.Context().Value(ctxKey{}).(*route).circuit
	}))
	s.rp = &httputil.ReverseProxy{
		Rewrite:      s.rewrite,
		Transport:    rt,
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
		if _, err := s.registry.Get(key); err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	return s, nil
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
	nt, err := newTable(cfg, s.metrics)
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
		if _, err := s.registry.Get(key); err != nil { // settings were validated by newTable
			s.log.Error("config reloaded: circuit not created", slog.String("circuit", key), slog.Any("err", err))
		}
	}
	s.log.Info("config reloaded", slog.Int("circuits_kept", kept), slog.Int("circuits_changed", changed),
		slog.Int("circuits_removed", removed), slog.Int("circuits", len(nt.circuits)))
	return nil
}

// ServeHTTP is the proxy: /<service>/<rest> or /<service>/<region>/<rest>.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t := s.table.Load()
	rt, _, svc, ok := t.resolve(r.URL.Path)
	if !ok {
		s.notFound(w, r, t, svc)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), ctxKey{}, rt), rt.timeout)
	defer cancel()
	sw := &statusWriter{ResponseWriter: w}
	s.rp.ServeHTTP(sw, r.WithContext(ctx))
	rt.metrics.observe(sw.status(), time.Since(start))
}

func (s *Server) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(ctxKey{}).(*route)
	prefix := "/" + rt.service
	if rt.region != "" {
		prefix += "/" + rt.region
	}
	pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, prefix)
	if pr.In.URL.RawPath != "" {
		pr.Out.URL.RawPath = strings.TrimPrefix(pr.In.URL.RawPath, prefix)
	}
	pr.SetURL(rt.target) // joins the base path, rewrites Host
	pr.SetXForwarded()
	pr.Out.Header.Set("X-Forwarded-Prefix", prefix)
}

// proxyError answers a request the upstream did not: 503 while the circuit
// is open, 504 on timeout, 502 on any other transport error.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	rt := r.Context().Value(ctxKey{}).(*route)
	var oe *breaker.OpenError
	switch {
	case errors.As(err, &oe):
		secs := int(math.Ceil(oe.RetryAfter().Seconds()))
		secs = max(secs, 1)
		h := w.Header()
		h.Set("Retry-After", strconv.Itoa(secs))
		h.Set("Breakerbox-Circuit", rt.circuit)
		h.Set("Breakerbox-State", "open")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error": "circuit open", "circuit": rt.circuit, "state": oe.State.String(), "retry_after_seconds": secs,
		})
	case r.Context().Err() == context.Canceled:
		// The client went away; nobody reads this answer.
		w.WriteHeader(499)
	case isTimeout(err):
		w.Header().Set("Breakerbox-Circuit", rt.circuit)
		writeJSON(w, http.StatusGatewayTimeout, map[string]any{
			"error": "upstream timeout", "circuit": rt.circuit, "timeout_seconds": rt.timeout.Seconds(),
		})
	default:
		s.log.Warn("upstream error", slog.String("circuit", rt.circuit), slog.String("error", err.Error()))
		w.Header().Set("Breakerbox-Circuit", rt.circuit)
		writeJSON(w, http.StatusBadGateway, map[string]any{
			"error": "upstream unreachable", "circuit": rt.circuit, "detail": err.Error(),
		})
	}
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// statusWriter records the status code for metrics. It keeps Flush and
// Unwrap reachable so streaming and http.ResponseController work.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
