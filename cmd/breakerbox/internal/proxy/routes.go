package proxy

import (
	"net/url"
	"strings"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// route is one circuit: a service, or one region of a per-region service.
type route struct {
	circuit  string // breaker key: "cloudflare" or "genesys/eu-west-1"
	service  string
	region   string // "" for a service without regions
	target   *url.URL
	timeout  time.Duration
	settings config.Settings
	metrics  *routeMetrics
}

// table is an immutable routing table built from one config; a reload swaps
// in a new one.
type table struct {
	cfg      *config.Config
	services map[string]*service
	circuits map[string]*route
}

type service struct {
	name    string
	single  *route            // set for a service with one upstream
	regions map[string]*route // set for a per-region service
}

func newTable(cfg *config.Config, m *metrics) (*table, error) {
	t := &table{cfg: cfg, services: map[string]*service{}, circuits: map[string]*route{}}
	for _, s := range cfg.Services {
		svc := &service{name: s.Name}
		add := func(region, upstream string) (*route, error) {
			u, err := url.Parse(upstream)
			if err != nil {
				return nil, err // validated by config; kept for safety
			}
			r := &route{circuit: s.Name, service: s.Name, region: region, target: u,
				timeout: s.Timeout.Duration, settings: s.Settings}
			if region != "" {
				r.circuit = s.Name + "/" + region
			}
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
	return t, nil
}

// resolve maps a request path to its route and the path to forward. ok is
// false for an unknown service or region.
func (t *table) resolve(path string) (r *route, rest string, svc *service, ok bool) {
	p := strings.TrimPrefix(path, "/")
	name, rest, _ := strings.Cut(p, "/")
	svc = t.services[name]
	if svc == nil {
		return nil, "", nil, false
	}
	if svc.single != nil {
		return svc.single, "/" + rest, svc, true
	}
	region, rest, _ := strings.Cut(rest, "/")
	r = svc.regions[region]
	return r, "/" + rest, svc, r != nil
}

// breakerConfig is the core config of the circuit's breaker.
func (r *route) breakerConfig(base breaker.Config) breaker.Config {
	c := r.settings.Breaker()
	c = c.Merge(base)
	c.Name = r.circuit
	return c
}
