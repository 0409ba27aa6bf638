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
	"strings"
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
	Kind                 string            `json:"kind"`
	Service              string            `json:"service"`
	Region               string            `json:"region,omitempty"`
	Upstream             string            `json:"upstream"`
	State                string            `json:"state"`
	ConsecutiveFailures  int               `json:"consecutive_failures"`
	ConsecutiveSuccesses int               `json:"consecutive_successes"`
	ProbesInFlight       int               `json:"probes_in_flight"`
	Counts               map[string]uint64 `json:"counts"`
	Rejected             uint64            `json:"rejected"`
	RejectedHalfOpen     uint64            `json:"rejected_half_open"`
	RetryAfterSeconds    float64           `json:"retry_after_seconds"`
	LastTransition       *TransitionJSON   `json:"last_transition"`
	Settings             SettingsJSON      `json:"settings"`
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
}

func transitionJSON(t breaker.Transition) *TransitionJSON {
	j := &TransitionJSON{Circuit: t.Name, At: t.At, From: t.From.String(), To: t.To.String(), Reason: t.Reason.String(), Message: t.Message()}
	if t.FleetReason != 0 {
		j.FleetReason = t.FleetReason.String()
	}
	return j
}

// Circuits returns every configured circuit, sorted by name.
func (s *Server) Circuits() []Circuit {
	t := s.table.Load()
	var out []Circuit
	for _, b := range s.registry.All() {
		if r := t.circuits[b.Name()]; r != nil {
			out = append(out, circuitJSON(r, b.Snapshot()))
		}
	}
	return out
}

func circuitJSON(r *route, snap breaker.Snapshot) Circuit {
	c := Circuit{
		Name: r.circuit, Kind: r.kind, Service: r.service, Region: r.region, Upstream: r.target.String(),
		State:                snap.State.String(),
		ConsecutiveFailures:  snap.ConsecutiveFailures,
		ConsecutiveSuccesses: snap.ConsecutiveSuccesses,
		ProbesInFlight:       snap.ProbesInFlight,
		Counts:               map[string]uint64{"success": snap.Successes, "failure": snap.Failures, "ignored": snap.Ignored},
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
	return c
}

// Admin is the admin listener's handler: the dashboard at /, the JSON API
// under /api/, Prometheus metrics at /metrics, and /healthz and /readyz.
func (s *Server) Admin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz) // health.go; no token: kubelet probes them
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /api/circuits", func(w http.ResponseWriter, r *http.Request) {
		writeCompactJSON(w, http.StatusOK, s.Circuits())
	})
	mux.HandleFunc("GET /api/circuits/{name...}", s.getCircuit)
	g := newAdminGuard(s)
	mux.HandleFunc("POST /api/circuits/{name...}", g.control)
	mux.HandleFunc("GET /api/transitions", func(w http.ResponseWriter, r *http.Request) {
		out := []*TransitionJSON{}
		for _, t := range s.history.recent(100) {
			out = append(out, transitionJSON(t))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /api/events", s.events)
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
		writeJSON(w, http.StatusOK, circuitJSON(rt, b.Snapshot()))
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
	writeJSON(w, http.StatusOK, circuitJSON(rt, b.Snapshot()))
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
			data, _ := json.Marshal(transitionJSON(t))
			msg = fmt.Sprintf("event: transition\ndata: %s\n\n", data)
		case <-keepalive.C:
			msg = ": keepalive\n\n"
		}
	}
}
