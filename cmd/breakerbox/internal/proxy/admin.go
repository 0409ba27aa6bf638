package proxy

import (
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breakerprom"
)

//go:embed dashboard
var dashboardFS embed.FS

// Circuit is one circuit as the JSON API shows it.
type Circuit struct {
	Name string `json:"name"`
	// Kind is "http", or "smtp" or "imap" for a mail circuit (whose
	// Upstream is then smtp://host:port or imap://host:port).
	Kind                 string          `json:"kind"`
	Service              string          `json:"service"`
	Region               string          `json:"region,omitempty"`
	Upstream             string          `json:"upstream"`
	State                string          `json:"state"`
	ConsecutiveFailures  int             `json:"consecutive_failures"`
	ConsecutiveSuccesses int             `json:"consecutive_successes"`
	ProbesInFlight       int             `json:"probes_in_flight"`
	Counts               Counts          `json:"counts"`
	Rejected             uint64          `json:"rejected"`
	RejectedHalfOpen     uint64          `json:"rejected_half_open"`
	RetryAfterSeconds    float64         `json:"retry_after_seconds"`
	LastTransition       *TransitionJSON `json:"last_transition"`
	Settings             SettingsJSON    `json:"settings"`
	// Stats are the rolling statistics of the last 5 minutes; null when the
	// circuit had no traffic in them.
	Stats *StatsJSON `json:"stats"`
	// Opened is, while the circuit is not closed, the transition that
	// opened it with its evidence (when this process saw it).
	Opened *TransitionJSON `json:"opened,omitempty"`
	// Recent is, for one circuit's page, its last outcomes, oldest first.
	Recent []Outcome `json:"recent,omitempty"`
}

// Counts are a circuit's outcome totals by outcome: success, failure,
// ignored.
type Counts map[string]uint64

// MarshalJSON writes the three outcomes in a fixed order: encoding/json
// sorts a map's keys by reflection, most of the cost of /api/circuits at
// 10,000 circuits.
func (c Counts) MarshalJSON() ([]byte, error) {
	return c.appendJSON(make([]byte, 0, 64)), nil
}

func (c Counts) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, k := range [...]string{"success", "failure", "ignored"} {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, c[k], 10)
	}
	return append(b, '}')
}

// SettingsJSON are a circuit's breaker settings.
type SettingsJSON struct {
	FailureThreshold  int     `json:"failure_threshold"`
	OpenTimeout       float64 `json:"open_timeout_seconds"`
	HalfOpenSuccesses int     `json:"half_open_successes"`
	HalfOpenProbes    int     `json:"half_open_probes"`
	Timeout           float64 `json:"timeout_seconds"`
}

// TransitionJSON is a transition as the API and the event stream show it.
type TransitionJSON struct {
	Circuit string    `json:"circuit"`
	At      time.Time `json:"at"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Reason  string    `json:"reason"`
	// FleetReason is, for reason "fleet", why the fleet of replicas moved.
	FleetReason string `json:"fleet_reason,omitempty"`
	Message     string `json:"message"`
	// OpenForSeconds is, for a transition to open, the time until a probe.
	OpenForSeconds float64 `json:"open_for_seconds,omitempty"`
	// Replica is the replica that recorded the transition.
	Replica string `json:"replica,omitempty"`
	// DecidedBy is, in a fleet, the replica whose call made the transition:
	// the fleet's decider, or Replica for a transition it made on its own;
	// empty outside a fleet or when not known.
	DecidedBy string `json:"decided_by,omitempty"`
	// Evidence is, for a transition to open, the outcomes that led to it
	// (oldest first): for one the fleet made, the failures reported by every
	// replica, each naming its replica; otherwise the circuit's last outcomes
	// on this replica.
	Evidence []Outcome `json:"evidence,omitempty"`
}

func transitionJSON(t breaker.Transition) *TransitionJSON {
	j := &TransitionJSON{Circuit: t.Name, At: t.At, From: t.From.String(), To: t.To.String(), Reason: t.Reason.String(), Message: t.Message()}
	if t.FleetReason != 0 {
		j.FleetReason = t.FleetReason.String()
	}
	if t.To == breaker.Open {
		j.OpenForSeconds = math.Round(t.OpenFor.Seconds()*10) / 10
	}
	return j
}

// Circuits returns every configured circuit, sorted by name.
func (s *Server) Circuits() []Circuit {
	var out []Circuit
	now := time.Now()
	s.routesSince(time.Time{}, nil, func(r *route, snap breaker.Snapshot) {
		out = append(out, s.circuitJSON(r, snap, now))
	})
	return out
}

// routesSince hands yield, in name order, the circuits whose answer may
// have changed since since (see changedSince); of those in names if not
// nil.
func (s *Server) routesSince(since time.Time, names map[string]bool, yield func(*route, breaker.Snapshot)) {
	t := s.table.Load()
	for _, r := range t.sorted {
		if names != nil && !names[r.circuit] {
			continue
		}
		b, ok := s.registry.Lookup(r.circuit)
		if !ok { // removed by a reload after t was loaded
			continue
		}
		snap := b.Snapshot()
		if !changedSince(r, snap.LastTransition.At, since) {
			continue
		}
		yield(r, snap)
	}
}

// changedSince says whether a circuit's answer may have changed since
// since (always for the zero time): it had traffic in the stats' window
// before since or later (its rates move as the window slides), or its last
// transition is since.
func changedSince(r *route, lastTransition, since time.Time) bool {
	horizon := since.Unix() - int64(bucketCount*bucketWidth/time.Second)
	return since.IsZero() || r.stats.active.Load() >= horizon || !lastTransition.Before(since)
}

// CircuitSummary is a circuit in GET /api/circuits?view=summary: what a
// script needs to count, filter and sort 10,000 circuits, in a sixth of
// the bytes (the dashboard reads view=page, sorted and paged by the
// server). The rates are the last minute's (see StatsJSON), 0 when idle.
type CircuitSummary struct {
	Name                string  `json:"name"`
	State               string  `json:"state"`
	ConsecutiveFailures int     `json:"consecutive_failures,omitempty"`
	FailureThreshold    int     `json:"failure_threshold"`
	RetryAfterSeconds   float64 `json:"retry_after_seconds,omitempty"`
	RequestsPerSecond   float64 `json:"requests_per_second,omitempty"`
	ErrorPercent        float64 `json:"error_percent,omitempty"`
	RejectedPerSecond   float64 `json:"rejected_per_second,omitempty"`
	P99Ms               float64 `json:"p99_ms,omitempty"`
}

// listCircuits is GET /api/circuits: every circuit, as compact JSON (there
// may be 10,000). Parameters:
//   - since=UNIX_SECONDS: only the circuits that may have changed since
//     then (see routesSince); Breakerbox-Time is the server's time of the
//     answer, the since of the next delta;
//   - name=NAME (repeated): only those circuits (a dashboard's visible page);
//   - view=summary: CircuitSummary instead of Circuit;
//   - view=page: one sorted, filtered page and the counts (pages.go).
func (s *Server) listCircuits(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	view := q.Get("view")
	switch view {
	case "", "full", "summary", "page":
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("view=%q: want full, summary or page", view)})
		return
	}
	summary := view == "summary"
	if view != "page" {
		for _, k := range pageParams {
			if q.Has(k) {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("%s=: only with view=page (the paged view sorts, filters and pages)", k)})
				return
			}
		}
	}
	var names map[string]bool
	if ns := q["name"]; len(ns) > 0 {
		names = make(map[string]bool, len(ns))
		for _, n := range ns {
			names[n] = true
		}
	}
	var since time.Time
	if v := q.Get("since"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 || math.IsInf(secs, 0) {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf("since=%q: want unix seconds, e.g. the Breakerbox-Time of the previous answer", v)})
			return
		}
		since = time.Unix(0, int64(secs*1e9))
	}
	if view == "page" {
		s.listPage(w, q, since)
		return
	}
	w.Header().Set("Breakerbox-Time", strconv.FormatFloat(float64(time.Now().UnixMilli())/1000, 'f', 3, 64))
	w.Header().Set("Breakerbox-Replica", s.replica)
	w.Header().Set("Content-Type", "application/json")
	// Streamed, one circuit at a time, through one Circuit reused for
	// each: no slice of 10,000 circuits, no buffer holding the whole
	// answer, no allocation per circuit without transitions.
	sc := listScratchPool.Get().(*listScratch)
	defer listScratchPool.Put(sc)
	b := append(sc.buf[:0], '[')
	now := time.Now()
	first := true
	s.routesSince(since, names, func(r *route, snap breaker.Snapshot) {
		if !first {
			b = append(b, ',')
		}
		first = false
		c := &sc.circuit
		s.fillCircuit(c, r, snap, now, &sc.stats)
		if summary {
			b = appendSummary(b, c)
		} else {
			b = appendCircuit(b, c)
		}
		b = append(b, '\n') // one circuit a line, as json.Encoder wrote them
		if len(b) >= 256<<10 {
			w.Write(b)
			b = b[:0]
		}
	})
	b = append(b, "]\n"...)
	w.Write(b)
	sc.buf = b[:0]
}

// listScratch is what one listing reuses for each circuit.
type listScratch struct {
	buf     []byte
	circuit Circuit
	stats   StatsJSON
}

var listScratchPool = sync.Pool{New: func() any { return &listScratch{buf: make([]byte, 0, 260<<10)} }}

func (s *Server) circuitJSON(r *route, snap breaker.Snapshot, now time.Time) Circuit {
	var c Circuit
	s.fillCircuit(&c, r, snap, now, nil)
	return c
}

// fillCircuit sets every field of c but Recent, reusing c.Counts and, if
// st is not nil, *st and its slices for the stats.
func (s *Server) fillCircuit(c *Circuit, r *route, snap breaker.Snapshot, now time.Time, st *StatsJSON) {
	counts := c.Counts
	if counts == nil {
		counts = make(Counts, 3)
	}
	counts["success"], counts["failure"], counts["ignored"] = snap.Successes, snap.Failures, snap.Ignored
	*c = Circuit{
		Name: r.circuit, Kind: r.kind, Service: r.service, Region: r.region, Upstream: r.upstream,
		State:                snap.State.String(),
		ConsecutiveFailures:  snap.ConsecutiveFailures,
		ConsecutiveSuccesses: snap.ConsecutiveSuccesses,
		ProbesInFlight:       snap.ProbesInFlight,
		Counts:               counts,
		Rejected:             snap.Rejected,
		RejectedHalfOpen:     snap.RejectedHalfOpen,
		RetryAfterSeconds:    math.Round(snap.RetryAfter.Seconds()*10) / 10,
		Settings: SettingsJSON{
			FailureThreshold: r.settings.FailureThreshold, OpenTimeout: r.settings.OpenTimeout.Duration.Seconds(),
			HalfOpenSuccesses: r.settings.HalfOpenSuccesses, HalfOpenProbes: r.settings.HalfOpenProbes,
			Timeout: r.settings.Timeout.Duration.Seconds(),
		},
	}
	if !snap.LastTransition.At.IsZero() {
		c.LastTransition = transitionJSON(snap.LastTransition)
	}
	if st == nil {
		c.Stats = r.stats.snapshot(now, s.started, false)
	} else if r.stats.snapshotInto(st, now, s.started, false) {
		c.Stats = st
	}
	if snap.State != breaker.Closed {
		c.Opened = r.stats.opened.Load()
	}
}

// Admin is the admin listener's handler: the dashboard at /, the JSON API
// under /api/, Prometheus metrics at /metrics, and /healthz and /readyz.
func (s *Server) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz) // health.go; no token: kubelet probes them
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /api/circuits", s.listCircuits)
	mux.HandleFunc("GET /api/circuits/{name...}", s.getCircuit)
	g := newAdminGuard(s)
	mux.HandleFunc("POST /api/circuits/{name...}", g.control)
	mux.HandleFunc("GET /api/transitions", s.transitions)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/fleet", s.fleet)
	// The breakers' and the routes' series are written straight as text:
	// with 10,000 circuits, gathering them through the registry cost
	// seconds of CPU per scrape.
	mux.Handle("GET /metrics", breakerprom.Handler(s.promReg, s.breakers, s.metrics))
	static, _ := fs.Sub(dashboardFS, "dashboard")
	mux.Handle("GET /", http.FileServerFS(static))
	return g.wrap(mux)
}

func (s *Server) circuit(w http.ResponseWriter, name string) (*route, *breaker.Breaker, bool) {
	r := s.table.Load().circuits[name]
	if r == nil {
		var names []string
		for _, c := range s.Circuits() {
			names = append(names, c.Name)
		}
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no circuit %q", name), "circuits": names})
		return nil, nil, false
	}
	b, err := s.registry.Get(name)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
		return nil, nil, false
	}
	return r, b, true
}

func (s *Server) getCircuit(w http.ResponseWriter, r *http.Request) {
	if rt, b, ok := s.circuit(w, r.PathValue("name")); ok {
		c := s.circuitJSON(rt, b.Snapshot(), time.Now())
		c.Stats = rt.stats.snapshot(time.Now(), s.started, true)
		c.Recent = rt.stats.evidence()
		writeJSON(w, http.StatusOK, c)
	}
}

// control is POST /api/circuits/{name}/open|close|reset.
func (g *adminGuard) control(w http.ResponseWriter, r *http.Request) {
	s := g.s
	path := r.PathValue("name")
	i := strings.LastIndex(path, "/")
	if i < 0 {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "want POST /api/circuits/{name}/open, /close or /reset"})
		return
	}
	name, action := path[:i], path[i+1:]
	token := s.table.Load().cfg.AdminToken
	switch {
	case token == "":
		writeJSON(w, http.StatusForbidden, map[string]any{"error": "manual control is disabled: set admin_token in the config or BREAKERBOX_ADMIN_TOKEN"})
		return
	case !g.authorized(w, r, token):
		return
	}
	rt, b, ok := s.circuit(w, name)
	if !ok {
		return
	}
	switch action {
	case "open":
		b.ForceOpen()
	case "close":
		b.ForceClosed()
	case "reset":
		b.Reset()
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("unknown action %q: want open, close or reset", action)})
		return
	}
	s.log.Warn("manual circuit control", slog.String("circuit", name), slog.String("action", action),
		slog.String("remote", r.RemoteAddr), slog.String("state", b.State().String()))
	writeJSON(w, http.StatusOK, s.circuitJSON(rt, b.Snapshot(), time.Now()))
}

// events streams transitions as Server-Sent Events ("transition" events with
// a TransitionJSON body), with a comment every 15 s to keep proxies from
// closing an idle stream. At most limits.admin.max_event_streams are open at
// once. A stream outlives the listener's read and write timeouts: it clears
// the read deadline (nothing more is read; the server's wait for the client
// to hang up must not end the stream) and gives each write the whole write
// timeout, so a stream lives as long as its reader keeps reading.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	limits := s.table.Load().cfg.Limits.Admin
	c, cancel, ok := s.history.subscribe(limits.MaxEventStreams)
	if !ok {
		w.Header().Set("Retry-After", "10")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error": fmt.Sprintf("too many event streams open (limit %d, limits.admin.max_event_streams): close another dashboard, or raise the limit",
				limits.MaxEventStreams)})
		return
	}
	defer cancel()
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	msg := "retry: 1000\n\n"
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		rc.SetWriteDeadline(time.Now().Add(limits.WriteTimeout.Duration))
		if _, err := io.WriteString(w, msg); err != nil || rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case t := <-c:
			data, _ := json.Marshal(t)
			msg = fmt.Sprintf("event: transition\ndata: %s\n\n", data)
		case <-keepalive.C:
			msg = ": keepalive\n\n"
		}
	}
}
