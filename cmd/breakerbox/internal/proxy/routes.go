package proxy

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// route is one circuit: a service, or one region of a per-region service,
// or a mail circuit. A mail circuit is in circuits only (its sessions go
// through package mailproxy, not through this proxy), so that the API, the
// dashboard, manual control and reloads treat it like any other.
type route struct {
	circuit   string // breaker key: "cloudflare" or "genesys/eu-west-1"
	kind      string // "http", or a mail circuit's protocol: "smtp", "imap"
	service   string
	region    string // "" for a service without regions
	target    *url.URL
	upstream  string            // target as text, for the API
	transport http.RoundTripper // bounded by timeout (see Server.transportFor)
	timeout   time.Duration
	settings  config.Settings
	metrics   *routeMetrics
	stats     *circuitStats // rolling statistics and evidence (stats.go)

	// Header values set on every request or rejection of this route, built
	// once. They are shared between requests: net/http only reads header
	// values, and their capacity equals their length, so an Add by anyone
	// copies instead of writing into them.
	prefixHeader  []string // X-Forwarded-Prefix: "/genesys/eu-west-1"
	prefixBytes   []byte   // the same, for the fasthttp engine
	circuitHeader []string // Breakerbox-Circuit
	circuitBytes  []byte   // the same, for the fasthttp engine
	forwardedFor  headerValue
	forwardedHost headerValue
	rejection     atomic.Pointer[rejection]
	fast          atomic.Pointer[fasthttp.HostClient] // the fasthttp engine's client (Server.fastClient)
}

// table is an immutable routing table built from one config; a reload swaps
// in a new one.
type table struct {
	cfg      *config.Config
	services map[string]*service
	circuits map[string]*route
	sorted   []*route // circuits by name, for the API (see statsTable.attach)
}

type service struct {
	name    string
	single  *route            // set for a service with one upstream
	regions map[string]*route // set for a per-region service
}

func newTable(cfg *config.Config, m *metrics, transportFor func(time.Duration) http.RoundTripper) (*table, error) {
	t := &table{cfg: cfg, services: map[string]*service{}, circuits: map[string]*route{}}
	for _, s := range cfg.Services {
		svc := &service{name: s.Name}
		add := func(region, upstream string) (*route, error) {
			u, err := url.Parse(upstream)
			if err != nil {
				return nil, err // validated by config; kept for safety
			}
			r := &route{circuit: s.Name, kind: "http", service: s.Name, region: region, target: u,
				timeout: s.Timeout.Duration, settings: s.Settings, transport: transportFor(s.Timeout.Duration)}
			if region != "" {
				r.circuit = s.Name + "/" + region
			}
			r.upstream = u.String()
			r.prefixHeader = []string{"/" + r.circuit}
			r.prefixBytes = []byte(r.prefixHeader[0])
			r.circuitHeader = []string{r.circuit}
			r.circuitBytes = []byte(r.circuit)
			r.metrics = m.forRoute(r)
			t.circuits[r.circuit] = r
			return r, nil
		}
		if s.Upstream != "" {
			r, err := add("", s.Upstream)
			if err != nil {
				return nil, err
			}
			svc.single = r
		} else {
			svc.regions = map[string]*route{}
			for _, region := range s.Regions() {
				r, err := add(region, s.PerRegion[region])
				if err != nil {
					return nil, err
				}
				svc.regions[region] = r
			}
		}
		t.services[s.Name] = svc
	}
	for _, mc := range cfg.Mail {
		r := &route{circuit: mc.Name, kind: mc.Protocol, service: mc.Name, target: &url.URL{Scheme: mc.Protocol, Host: mc.Upstream},
			timeout: mc.Timeout.Duration, settings: mc.Settings}
		r.upstream = r.target.String()
		r.metrics = m.forRoute(r)
		t.circuits[r.circuit] = r
	}
	return t, nil
}

// errDotSegment rejects a path with a "." or ".." segment.
var errDotSegment = errors.New(`the path has a "." or ".." segment (raw or %-encoded): send the path normalized, as RFC 3986 section 5.2.4 says clients do`)

// resolve maps a request URL to its route and the path to forward, decoded
// (path) and as sent (rawPath, "" when the default encoding of path). svc is
// set when the service exists but the region does not; r is nil then, as it
// is for an unknown service. err is set for a path that must not be
// forwarded.
//
// The routing segments are matched decoded, so /%72ec/x routes like
// /rec/x, and the rest is forwarded as the client encoded it: an encoded
// slash (a%2Fb) stays one segment upstream whichever way the routing
// segments were written.
//
// A dot segment is refused, never cleaned: forwarded, "/svc/../x" reaches
// the upstream above the service's base path; cleaned, it would silently
// address another resource (or another service) than the one the client
// wrote. Clients normalize dot segments before sending, so only probes and
// attacks carry them. Segments are split on decoded "/" (so a%2F..%2Fb
// counts) and on "\" (which some servers treat as a separator).
func (t *table) resolve(u *url.URL) (r *route, path, rawPath string, svc *service, err error) {
	if hasDotSegment(u.Path) {
		return nil, "", "", nil, errDotSegment
	}
	if u.RawPath == "" {
		// Common case: Path is what the client sent; slicing it allocates
		// nothing.
		r, svc, n := t.match(u.Path, false)
		if r == nil {
			return nil, "", "", svc, nil
		}
		return r, u.Path[n:], "", svc, nil
	}
	raw := u.EscapedPath() // RawPath if it is a valid encoding of Path
	r, svc, n := t.match(raw, true)
	if r == nil {
		return nil, "", "", svc, nil
	}
	rawPath = raw[n:]
	path, perr := url.PathUnescape(rawPath)
	if perr != nil { // unreachable: raw is a valid encoding
		return nil, "", "", nil, perr
	}
	return r, path, rawPath, svc, nil
}

// match finds the route addressed by the first one or two segments of p,
// decoding them if escaped, and returns the length of the routing prefix
// ("/svc" or "/svc/region") in p.
func (t *table) match(p string, escaped bool) (r *route, svc *service, n int) {
	seg := func(from int) (string, int) {
		end := strings.IndexByte(p[from:], '/')
		if end < 0 {
			end = len(p) - from
		}
		s := p[from : from+end]
		if escaped {
			s, _ = url.PathUnescape(s) // on error "" matches nothing
		}
		return s, from + end
	}
	if !strings.HasPrefix(p, "/") {
		return nil, nil, 0
	}
	name, n := seg(1)
	svc = t.services[name]
	if svc == nil {
		return nil, nil, 0
	}
	if svc.single != nil {
		return svc.single, svc, n
	}
	if n >= len(p) {
		return nil, svc, 0
	}
	region, n := seg(n + 1)
	if r = svc.regions[region]; r == nil {
		return nil, svc, 0
	}
	return r, svc, n
}

// hasDotSegment reports whether the decoded path has a "." or ".." segment,
// splitting on "/" and "\".
func hasDotSegment(p string) bool {
	if !strings.Contains(p, ".") {
		return false
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' || p[i] == '\\' {
			if s := p[start:i]; s == "." || s == ".." {
				return true
			}
			start = i + 1
		}
	}
	return false
}

// breakerConfig is the core config of the circuit's breaker.
func (r *route) breakerConfig(base breaker.Config) breaker.Config {
	c := r.settings.Breaker()
	c = c.Merge(base)
	c.Name = r.circuit
	return c
}
