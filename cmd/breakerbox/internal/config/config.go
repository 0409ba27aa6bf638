// Package config reads and validates breakerbox's YAML configuration.
//
// Every error names the file, the field and the fix, e.g.
//
//	breakerbox.yaml: services[2].open_timeout: "60" is not a duration: write it with a unit, e.g. 60s
//
// Unknown keys are errors. Breaker settings left out of a service come from
// defaults; settings left out of defaults are ADR-002's (5 failures, 60s,
// 2 successes, 1 probe) and a 30s upstream timeout.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/breakerbox/breakerbox/breaker"
)

// DefaultYAML is the embedded default: ADR-002's services and T10's Genesys
// regions.
//
//go:embed default.yaml
var DefaultYAML []byte

// Config is a whole breakerbox configuration.
type Config struct {
	// Listen is the proxy's address. Default 127.0.0.1:7070.
	Listen string `yaml:"listen"`
	// Admin is the dashboard, API and metrics address. Default 127.0.0.1:7071.
	Admin string `yaml:"admin"`
	// AdminToken enables the manual-control API (open, close, reset) for
	// requests with "Authorization: Bearer <token>". The environment
	// variable BREAKERBOX_ADMIN_TOKEN, if set, takes precedence.
	AdminToken string `yaml:"admin_token"`
	// State is where circuit state lives: "memory" (default), each process
	// on its own, or a Redis URL (redis://host:port/db, rediss:// for TLS)
	// shared by every replica pointed at it, so a fleet acts as one breaker
	// per circuit (see package redisstate).
	State string `yaml:"state"`
	// Quorum, with a Redis state, is the number of distinct replicas whose
	// failures must be in a streak before the fleet opens a circuit. 0 or 1:
	// any replica's failures count.
	Quorum int `yaml:"quorum"`
	// Defaults are the breaker settings of services that do not set their own.
	Defaults Settings `yaml:"defaults"`
	// Services are the upstreams breakerbox forwards to.
	Services []Service `yaml:"services"`
}

// Settings are a service's breaker settings. Zero means "inherit".
type Settings struct {
	FailureThreshold  int      `yaml:"failure_threshold"`
	OpenTimeout       Duration `yaml:"open_timeout"`
	HalfOpenSuccesses int      `yaml:"half_open_successes"`
	HalfOpenProbes    int      `yaml:"half_open_probes"`
	ProbeTimeout      Duration `yaml:"probe_timeout"`
	// Timeout bounds one upstream request, headers and body.
	Timeout Duration `yaml:"timeout"`
}

// Service is one upstream (or one per region).
type Service struct {
	// Name is the first path segment clients use: /<name>/...
	Name string `yaml:"name"`
	// Upstream is the base URL requests are forwarded to.
	Upstream string `yaml:"upstream"`
	// PerRegion maps region → upstream base URL, addressed as
	// /<name>/<region>/...; each region has its own breaker.
	PerRegion map[string]string `yaml:"per_region"`
	Settings  `yaml:",inline"`
}

// Duration is a time.Duration written in YAML as a Go duration, e.g. 60s.
// A value that does not parse is kept and reported by validation, which
// knows the field's name.
type Duration struct {
	time.Duration
	invalid string
}

// Dur returns a Duration of d.
func Dur(d time.Duration) Duration { return Duration{Duration: d} }

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		d.invalid = n.Value
		if n.Kind != yaml.ScalarNode {
			d.invalid = "(not a scalar)"
		}
		return nil
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Default returns the embedded default configuration.
func Default() *Config {
	c, err := Parse("default.yaml (embedded)", DefaultYAML)
	if err != nil {
		panic(err) // a test keeps the embedded file valid
	}
	return c
}

// Parse decodes and validates a configuration; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file: want at least a services list", name)
		}
		return nil, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if tok := os.Getenv("BREAKERBOX_ADMIN_TOKEN"); tok != "" {
		c.AdminToken = tok
	}
	return &c, nil
}

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func (c *Config) validate() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7070"
	}
	if c.Admin == "" {
		c.Admin = "127.0.0.1:7071"
	}
	for _, a := range []struct{ field, v string }{{"listen", c.Listen}, {"admin", c.Admin}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("%s: %q is not host:port, e.g. 127.0.0.1:7070", a.field, a.v)
		}
	}
	if c.Listen == c.Admin {
		return fmt.Errorf("admin: %q is also the proxy's listen address: give the admin listener its own port", c.Admin)
	}
	switch {
	case c.State == "":
		c.State = "memory"
	case c.State == "memory":
	case strings.HasPrefix(c.State, "redis://"), strings.HasPrefix(c.State, "rediss://"):
		if err := checkRedisURL(c.State); err != nil {
			return fmt.Errorf("state: %q: %v; want redis://[user:password@]host:port[/db]", redactURL(c.State), err)
		}
	default:
		return fmt.Errorf("state: %q: want memory, or redis://host:port/db to share circuits across replicas", c.State)
	}
	switch {
	case c.Quorum < 0:
		return fmt.Errorf("quorum: %d: must be ≥ 0", c.Quorum)
	case c.Quorum > 1 && c.State == "memory":
		return fmt.Errorf("quorum: %d: needs a shared state (state: redis://...); remove it for memory", c.Quorum)
	}
	if err := c.Defaults.validate("defaults"); err != nil {
		return err
	}
	c.Defaults = c.Defaults.inherit(Settings{FailureThreshold: breaker.DefaultFailureThreshold,
		OpenTimeout: Dur(breaker.DefaultOpenTimeout), HalfOpenSuccesses: breaker.DefaultHalfOpenSuccesses,
		HalfOpenProbes: breaker.DefaultHalfOpenProbes, Timeout: Dur(30 * time.Second)})
	if len(c.Services) == 0 {
		return errors.New("services: empty: list at least one service with a name and an upstream")
	}
	seen := map[string]int{}
	for i := range c.Services {
		s := &c.Services[i]
		field := fmt.Sprintf("services[%d]", i)
		if !namePattern.MatchString(s.Name) {
			return fmt.Errorf("%s.name: %q: want lower-case letters, digits, '.', '_' or '-' (it becomes the URL path /<name>/)", field, s.Name)
		}
		if j, dup := seen[s.Name]; dup {
			return fmt.Errorf("%s.name: %q is already the name of services[%d]: names must be unique", field, s.Name, j)
		}
		seen[s.Name] = i
		switch {
		case s.Upstream != "" && len(s.PerRegion) > 0:
			return fmt.Errorf("%s: set either upstream or per_region, not both", field)
		case s.Upstream == "" && len(s.PerRegion) == 0:
			return fmt.Errorf("%s: no upstream: set upstream (a base URL) or per_region (region: base URL)", field)
		case s.Upstream != "":
			if err := checkUpstream(s.Upstream); err != nil {
				return fmt.Errorf("%s.upstream: %w", field, err)
			}
		}
		for _, r := range s.Regions() {
			if !namePattern.MatchString(r) {
				return fmt.Errorf("%s.per_region: region %q: want lower-case letters, digits, '.', '_' or '-'", field, r)
			}
			if err := checkUpstream(s.PerRegion[r]); err != nil {
				return fmt.Errorf("%s.per_region.%s: %w", field, r, err)
			}
		}
		if err := s.Settings.validate(field); err != nil {
			return err
		}
		s.Settings = s.Settings.inherit(c.Defaults)
	}
	return nil
}

func checkUpstream(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%q: %v", raw, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an absolute http:// or https:// URL", raw)
	case u.Host == "":
		return fmt.Errorf("%q: no host: want e.g. https://api.example.com", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q: no query, fragment or credentials allowed in an upstream base URL", raw)
	}
	return nil
}

func (s Settings) validate(field string) error {
	for _, n := range []struct {
		name string
		v    int
	}{{"failure_threshold", s.FailureThreshold}, {"half_open_successes", s.HalfOpenSuccesses}, {"half_open_probes", s.HalfOpenProbes}} {
		if n.v < 0 {
			return fmt.Errorf("%s.%s: %d: want a whole number ≥ 1 (leave it out to inherit)", field, n.name, n.v)
		}
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{{"open_timeout", s.OpenTimeout}, {"probe_timeout", s.ProbeTimeout}, {"timeout", s.Timeout}} {
		if d.v.invalid != "" {
			return fmt.Errorf("%s.%s: %q is not a duration: write it with a unit, e.g. 60s or 1m30s", field, d.name, d.v.invalid)
		}
		if d.v.Duration < 0 {
			return fmt.Errorf("%s.%s: %v: want a positive duration such as 30s (leave it out to inherit)", field, d.name, d.v.Duration)
		}
	}
	return nil
}

// inherit fills the zero fields of s from base.
func (s Settings) inherit(base Settings) Settings {
	if s.FailureThreshold == 0 {
		s.FailureThreshold = base.FailureThreshold
	}
	if s.OpenTimeout.Duration == 0 {
		s.OpenTimeout = base.OpenTimeout
	}
	if s.HalfOpenSuccesses == 0 {
		s.HalfOpenSuccesses = base.HalfOpenSuccesses
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = base.HalfOpenProbes
	}
	if s.ProbeTimeout.Duration == 0 {
		s.ProbeTimeout = base.ProbeTimeout
	}
	if s.Timeout.Duration == 0 {
		s.Timeout = base.Timeout
	}
	return s
}

// Regions returns the service's regions in sorted order (none for a service
// with a single upstream).
func (s Service) Regions() []string {
	rs := make([]string, 0, len(s.PerRegion))
	for r := range s.PerRegion {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	return rs
}

// Breaker returns the core breaker settings of s.
func (s Settings) Breaker() breaker.Config {
	return breaker.Config{
		FailureThreshold:  s.FailureThreshold,
		OpenTimeout:       s.OpenTimeout.Duration,
		HalfOpenSuccesses: s.HalfOpenSuccesses,
		HalfOpenProbes:    s.HalfOpenProbes,
		ProbeTimeout:      s.ProbeTimeout.Duration,
	}
}

// Service returns the service called name.
func (c *Config) Service(name string) (*Service, bool) {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i], true
		}
	}
	return nil, false
}

// checkRedisURL catches what a person gets wrong in a Redis URL; the Redis
// client checks the rest when it connects.
func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err // its message holds the whole URL, password included
	}
	if err != nil {
		return err
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if _, port, err := net.SplitHostPort(u.Host); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number in 1-65535", port)
		}
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return fmt.Errorf("database %q is not a number", db)
		}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("query and fragment are not supported")
	}
	return nil
}

// StateRedacted is State with a password in its URL hidden, for logs and
// output.
func (c *Config) StateRedacted() string { return redactURL(c.State) }

// redactURL hides a password in a URL for error messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
