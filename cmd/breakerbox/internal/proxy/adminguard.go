package proxy

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// adminSecurityHeaders go on every admin response. The dashboard loads its
// own script, style sheet and API from the same origin and draws its
// favicon as a data: URL; nothing else is allowed, and no page may frame it.
var adminSecurityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"X-Frame-Options":              "DENY",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Resource-Policy": "same-origin",
}

// Failed-token backoff: each failed attempt from one client address is
// answered after a delay that doubles from failureDelay up to
// maxFailureDelay, and is forgotten failureMemory after the last failure.
// failureLogEvery bounds the log to one line per period, with a count.
const (
	failureDelay    = 100 * time.Millisecond
	maxFailureDelay = 2 * time.Second
	failureMemory   = 10 * time.Minute
	failureLogEvery = 10 * time.Second
	maxFailingPeers = 10_000
)

// adminGuard stands between the network and the admin API: it sets the
// security headers, refuses foreign Host headers (DNS rebinding), and
// checks, logs and slows failed token attempts.
//
// Why failures are slowed this way and cannot lock the operator out: the
// token is compared first, always, and a right token is never delayed; only
// a wrong one waits, per client address, before its 401. Guessing thus runs
// at most at limits.admin.max_connections guesses per 2 s, against a token of
// at least 16 characters (config.MinTokenLength): hopeless, while the
// operator, even on the attacker's address, gets in with the right token at
// once.
type adminGuard struct {
	s *Server

	mu         sync.Mutex
	failing    map[string]*peerFailures // by client IP
	lastLog    time.Time
	suppressed int
}

type peerFailures struct {
	n    int
	last time.Time
}

func newAdminGuard(s *Server) *adminGuard {
	return &adminGuard{s: s, failing: map[string]*peerFailures{}}
}

// wrap adds the headers and the Host check to the admin handler h.
func (g *adminGuard) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range adminSecurityHeaders {
			w.Header().Set(k, v)
		}
		if !allowedAdminHost(r.Host, g.s.table.Load().cfg) {
			writeJSON(w, http.StatusMisdirectedRequest, map[string]any{
				"error": fmt.Sprintf("Host %q is not a name of this admin listener: reach it by IP address or localhost, "+
					"or add the name to admin_hosts in the config", r.Host)})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// allowedAdminHost reports whether a request's Host header names this
// listener. A DNS-rebinding page reaches the listener under the attacker's
// own host name, so names are refused unless configured; IP addresses and
// localhost cannot be rebound.
func allowedAdminHost(host string, cfg *config.Config) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if host == "" || net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true // an empty Host is an HTTP/1.0 client, never a browser
	}
	if h, _, err := net.SplitHostPort(cfg.Admin); err == nil && strings.EqualFold(host, h) {
		return true
	}
	for _, h := range cfg.AdminHosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// bearer returns the token of an Authorization header; the scheme is
// case-insensitive (RFC 9110 §11.1).
func bearer(header string) (string, bool) {
	scheme, tok, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	return strings.TrimLeft(tok, " "), true
}

// authorized checks r's bearer token against token. A failure is logged
// (at most once per failureLogEvery, with the count since) and answered 401
// after the client's backoff delay; it returns false then.
func (g *adminGuard) authorized(w http.ResponseWriter, r *http.Request, token string) bool {
	got, ok := bearer(r.Header.Get("Authorization"))
	peer := r.RemoteAddr
	if h, _, err := net.SplitHostPort(peer); err == nil {
		peer = h
	}
	if ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1 {
		g.mu.Lock()
		delete(g.failing, peer)
		g.mu.Unlock()
		return true
	}
	delay := g.failed(peer, ok, r)
	t := time.NewTimer(delay)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="breakerbox"`)
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong token: send Authorization: Bearer <admin_token>"})
	return false
}

// failed records a failed attempt from peer and returns its delay.
func (g *adminGuard) failed(peer string, sentToken bool, r *http.Request) time.Duration {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.failing) >= maxFailingPeers { // many addresses: forget the old ones
		for k, f := range g.failing {
			if now.Sub(f.last) > failureMemory/10 {
				delete(g.failing, k)
			}
		}
	}
	f := g.failing[peer]
	if f == nil || now.Sub(f.last) > failureMemory {
		f = &peerFailures{}
		if len(g.failing) < maxFailingPeers {
			g.failing[peer] = f
		}
	}
	f.n++
	f.last = now
	delay := min(failureDelay<<min(f.n-1, 8), maxFailureDelay)
	if now.Sub(g.lastLog) < failureLogEvery {
		g.suppressed++
		return delay
	}
	reason := "wrong token"
	if !sentToken {
		reason = "no bearer token"
	}
	g.s.log.Warn("admin API: failed token attempt", slog.String("remote", r.RemoteAddr), slog.String("reason", reason),
		slog.String("path", r.URL.Path), slog.Int("attempts_from_remote", f.n),
		slog.Int("failures_not_logged_since_last", g.suppressed), slog.Duration("answer_delay", delay))
	g.lastLog, g.suppressed = now, 0
	return delay
}
