package proxy

import (
	"math"
	"net/http"
	"sync/atomic"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/redisstate"
)

// Health is what /healthz and /readyz know beyond the server itself: whether
// the listeners are up, and how the last config reload went. The process
// that serves the listeners sets it (see Server.Health); its zero value is
// "not ready yet".
type Health struct {
	ready     atomic.Bool
	reloadErr atomic.Pointer[string]
}

// SetReady says the listeners are up (true) or are going away (false).
func (h *Health) SetReady(ready bool) { h.ready.Store(ready) }

// Reloaded records the outcome of a config reload: a rejected reload keeps
// the old config, so the sidecar stays ready, and /readyz shows the error
// until a reload succeeds.
func (h *Health) Reloaded(err error) {
	if err == nil {
		h.reloadErr.Store(nil)
		return
	}
	msg := err.Error()
	h.reloadErr.Store(&msg)
}

// Health returns the server's health, for the process serving it to set.
func (s *Server) Health() *Health { return &s.health }

// fleetHealth is the shared state's view of itself (a *redisstate.Fleet).
type fleetHealth interface{ Stats() redisstate.Stats }

// Readiness is the body of /readyz.
type Readiness struct {
	// Status is "ready", "degraded" (ready, but the replica cannot reach
	// the shared state and decides on local counts alone) or "not ready".
	Status string `json:"status"`
	// Reason says why a replica is not ready or degraded.
	Reason   string `json:"reason,omitempty"`
	Circuits int    `json:"circuits"`
	// State is "memory" or the Redis URL without its password.
	State string          `json:"state"`
	Fleet *ReadyFleetJSON `json:"fleet,omitempty"`
	// LastReloadError is why the last config reload was rejected (the old
	// config stays in force), until a reload succeeds.
	LastReloadError string `json:"last_reload_error,omitempty"`
}

// ReadyFleetJSON is this replica's view of the fleet.
type ReadyFleetJSON struct {
	Replica            string  `json:"replica"`
	Degraded           bool    `json:"degraded"`
	DegradedForSeconds float64 `json:"degraded_for_seconds,omitempty"`
}

// Readiness reports whether the server should receive traffic. It is ready
// once the listeners are up and stays ready while the fleet is degraded or
// a reload was rejected: the sidecar breaks on its own counts without Redis
// and keeps its old config, and taking it out of service would stop the
// application's calls altogether.
func (s *Server) Readiness() Readiness {
	t := s.table.Load()
	r := Readiness{Status: "ready", Circuits: len(t.circuits), State: config.RedactURL(t.cfg.State)}
	if e := s.health.reloadErr.Load(); e != nil {
		r.LastReloadError = *e
	}
	if s.fleetHealth != nil {
		st := s.fleetHealth.Stats()
		r.Fleet = &ReadyFleetJSON{Replica: st.Replica, Degraded: st.Degraded,
			DegradedForSeconds: math.Round(st.DegradedFor.Seconds()*10) / 10}
		if st.Degraded {
			r.Status, r.Reason = "degraded", "Redis is unreachable: deciding on this replica's counts alone"
		}
	}
	if !s.health.ready.Load() {
		r.Status, r.Reason = "not ready", "the listeners are not up, or are shutting down"
	}
	return r
}

// healthz is GET /healthz: the process answers.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

// readyz is GET /readyz: 200 when ready (degraded included), 503 when not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	rd := s.Readiness()
	code := http.StatusOK
	if rd.Status == "not ready" {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, rd)
}
