// Package config reads and validates breakerbox's YAML configuration.
//
// Every problem is reported at once, each naming the file, the line, the
// field and the fix, e.g.
//
//	breakerbox.yaml:7: services[2].open_timeout: "60" is not a duration: write it with a unit, e.g. 60s
//	breakerbox.yaml:9: unknown key "failure_treshold" in services[0]; did you mean "failure_threshold"?
//
// Unknown keys are errors. Breaker settings left out of a service come from
// defaults; settings left out of defaults are ADR-002's (5 failures, 60s,
// 2 successes, 1 probe) and a 30s upstream timeout.
//
// Mail circuits (mail:) take the same breaker settings and defaults; each
// names a loopback listen address, a provider's host:port and how to
// secure the connection to it (see Mail).
package config

import (
	"crypto/x509"
	_ "embed"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// DefaultYAML is the embedded default: ADR-002's services and T10's Genesys
// regions.
//
//go:embed default.yaml
var DefaultYAML []byte

// MaxSize is the largest config file read: a config is a few kilobytes, and
// a path such as /dev/zero must fail, not fill memory.
const MaxSize = 4 << 20

// MinTokenLength is the shortest admin token accepted: long enough that
// guessing it over the network is hopeless even at full speed.
const MinTokenLength = 16

// Config is a whole breakerbox configuration.
type Config struct {
	// Listen is the proxy's address. Default 127.0.0.1:7070. The
	// environment variable BREAKERBOX_LISTEN, if set, takes precedence.
	Listen string `yaml:"listen"`
	// ListenEngine is the HTTP implementation of the proxy listener:
	// EngineNetHTTP (default), or EngineFastHTTP, which serves and forwards
	// a request at a fraction of net/http's CPU (bench/RESULTS.md) and hands
	// protocol upgrades to net/http; see package proxy for what it does
	// differently. The admin listener is always net/http.
	ListenEngine string `yaml:"listen_engine"`
	// Admin is the dashboard, API, metrics and health address. Default
	// 127.0.0.1:7071. The environment variable BREAKERBOX_ADMIN, if set,
	// takes precedence.
	Admin string `yaml:"admin"`
	// AdminToken enables the manual-control API (open, close, reset) for
	// requests with "Authorization: Bearer <token>"; at least MinTokenLength
	// characters. The environment variable BREAKERBOX_ADMIN_TOKEN, if set,
	// takes precedence.
	AdminToken string `yaml:"admin_token"`
	// AdminHosts are host names, beside the admin address's own host,
	// localhost and IP addresses, that the admin listener answers to. Any
	// other Host header is refused, so a web page cannot reach the API
	// through DNS rebinding.
	AdminHosts []string `yaml:"admin_hosts"`
	// State is where circuit state lives: "memory" (default), each process
	// on its own, or Redis, shared by every replica pointed at it, so a
	// fleet acts as one breaker per circuit (see package redisstate). In the
	// file: a URL (redis://host:port/db, rediss:// for TLS), or a mapping
	// with a url, a sentinel or a cluster, and TLS and ACL options (see
	// Redis); State is then "redis". Redis is set for both forms.
	State string `yaml:"state"`
	Redis *Redis `yaml:"-"`
	// Quorum, with a Redis state, is the number of distinct replicas whose
	// failures must be in a streak before the fleet opens a circuit. 0 or 1:
	// any replica's failures count.
	Quorum int `yaml:"quorum"`
	// Replica names this process in the dashboard, the API, its
	// transitions and, with a Redis state, the fleet. Default: the host
	// name (with a Redis state, two replicas on one host need their own).
	Replica string `yaml:"replica"`
	// Limits bound the connections, timeouts and event streams of the two
	// listeners.
	Limits Limits `yaml:"limits"`
	// Defaults are the breaker settings of services that do not set their own.
	Defaults Settings `yaml:"defaults"`
	// Services are the upstreams breakerbox forwards to.
	Services []Service `yaml:"services"`
	// Mail are the mail circuits: each a loopback listener that relays
	// SMTP or IMAP sessions to a provider through its breaker.
	Mail []Mail `yaml:"mail"`

	// Warnings are what validation found risky but legal (an admin
	// listener reachable from the network without a token); the daemon
	// logs them at startup and check-config prints them.
	Warnings []string `yaml:"-"`
}

// The values of Config.ListenEngine.
const (
	EngineNetHTTP  = "net/http"
	EngineFastHTTP = "fasthttp"
)

// Limits are the connection limits of both listeners.
type Limits struct {
	Proxy ListenerLimits `yaml:"proxy"`
	Admin ListenerLimits `yaml:"admin"`
}

// ListenerLimits bound one listener's connections. Zero means the default
// (DefaultLimits).
type ListenerLimits struct {
	// MaxConnections is the most connections held open at once. At the cap,
	// a new connection closes the longest-idle one (a keep-alive between
	// requests, or one that has not sent a request yet); if every connection
	// is busy, it waits until one ends.
	MaxConnections int `yaml:"max_connections"`
	// IdleTimeout closes a keep-alive connection with no request for this long.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// ReadHeaderTimeout is the time allowed to send a request's headers.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout is the time allowed to read a whole request. On the proxy
	// a forwarded request gets its service's timeout on top.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout is the time allowed to write a response. On the proxy a
	// forwarded request gets its service's timeout on top; an event stream
	// gets it afresh for each event, so a stream lives as long as its reader
	// keeps reading.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxEventStreams (admin only) is the most dashboard event streams
	// (/api/events) open at once; more are answered 503.
	MaxEventStreams int `yaml:"max_event_streams"`
}

// DefaultLimits are the limits a config leaves out: generous for a sidecar
// on one host, far below the process's file-descriptor limit.
var DefaultLimits = Limits{
	Proxy: ListenerLimits{MaxConnections: 4096, IdleTimeout: Dur(60 * time.Second), ReadHeaderTimeout: Dur(10 * time.Second),
		ReadTimeout: Dur(60 * time.Second), WriteTimeout: Dur(60 * time.Second)},
	Admin: ListenerLimits{MaxConnections: 256, IdleTimeout: Dur(30 * time.Second), ReadHeaderTimeout: Dur(10 * time.Second),
		ReadTimeout: Dur(30 * time.Second), WriteTimeout: Dur(30 * time.Second), MaxEventStreams: 64},
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

// Mail protocols and TLS modes, as written in the config (package
// mailproxy uses the same words).
var (
	mailProtocols = []string{"smtp", "imap"}
	mailTLSModes  = []string{"implicit", "starttls", "plaintext"}
)

// DefaultMailTimeout is a mail circuit's timeout when neither it nor
// defaults set one: the time the provider may take to answer a command
// (an SMTP server may think for minutes after a message's final dot).
// The HTTP default of 30s would count a slow provider as down.
const DefaultMailTimeout = 2 * time.Minute

// Mail is one mail circuit: a loopback listener that mail clients point at
// instead of the provider.
type Mail struct {
	// Name is the circuit's name, unique among services and mail.
	Name string `yaml:"name"`
	// Protocol is smtp or imap.
	Protocol string `yaml:"protocol"`
	// Listen is the loopback host:port mail clients connect to, in plain
	// SMTP or IMAP.
	Listen string `yaml:"listen"`
	// ListenEngine is the HTTP implementation of the proxy listener:
	// EngineNetHTTP (default), or EngineFastHTTP, which serves and forwards
	// a request at a fraction of net/http's CPU (bench/RESULTS.md) and hands
	// protocol upgrades to net/http; see package proxy for what it does
	// differently. The admin listener is always net/http.
	ListenEngine string `yaml:"listen_engine"`
	// Upstream is the provider's host:port, e.g. smtp.gmail.com:465.
	Upstream string `yaml:"upstream"`
	// TLS is how the connection to the provider is secured: implicit,
	// starttls or plaintext. Empty means by port: implicit on 465 and 993,
	// starttls on 25, 587 and 143; plaintext only when written.
	TLS string `yaml:"tls"`
	// CAFile is a PEM file of the CAs the provider's certificate must chain
	// to; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// RootCAs are the certificates of CAFile, read at load (nil without
	// CAFile).
	RootCAs *x509.CertPool `yaml:"-"`
	// Settings are the circuit's breaker settings; Timeout bounds the
	// provider's silence while it owes a reply (default DefaultMailTimeout
	// unless defaults set one).
	Settings `yaml:",inline"`
}

// Equal reports whether two mail circuits are configured alike, their CA
// files' contents included.
func (m Mail) Equal(o Mail) bool {
	a, b := m, o
	a.RootCAs, b.RootCAs = nil, nil
	return a == b && (m.RootCAs == nil) == (o.RootCAs == nil) && (m.RootCAs == nil || m.RootCAs.Equal(o.RootCAs))
}

// Duration is a time.Duration written in YAML as a Go duration, e.g. 60s.
type Duration struct{ time.Duration }

// Dur returns a Duration of d.
func Dur(d time.Duration) Duration { return Duration{Duration: d} }

// MarshalYAML writes the duration as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Load reads and validates the file at path; it reads at most MaxSize bytes.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
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

// Parse decodes and validates a configuration; name is used in errors. The
// error, if any, is an *Error listing every problem found.
func Parse(name string, data []byte) (*Config, error) {
	d := &decoder{file: name, lines: map[string]int{}}
	if len(data) > MaxSize {
		d.errorf(0, "", "larger than %d MiB: a breakerbox config is a few kilobytes; is this the right file?", MaxSize>>20)
		return nil, d.err()
	}
	c := d.decode(data)
	if c == nil {
		return nil, d.err()
	}
	d.validate(c)
	if err := d.err(); err != nil {
		return nil, err
	}
	return c, nil
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

// inherit fills the zero fields of l from base.
func (l ListenerLimits) inherit(base ListenerLimits) ListenerLimits {
	if l.MaxConnections == 0 {
		l.MaxConnections = base.MaxConnections
	}
	if l.MaxEventStreams == 0 {
		l.MaxEventStreams = base.MaxEventStreams
	}
	for _, d := range []struct{ v, base *Duration }{{&l.IdleTimeout, &base.IdleTimeout},
		{&l.ReadHeaderTimeout, &base.ReadHeaderTimeout}, {&l.ReadTimeout, &base.ReadTimeout}, {&l.WriteTimeout, &base.WriteTimeout}} {
		if d.v.Duration == 0 {
			*d.v = *d.base
		}
	}
	return l
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

// MaxTimeout is the longest upstream timeout of any service.
func (c *Config) MaxTimeout() time.Duration {
	var m time.Duration
	for _, s := range c.Services {
		m = max(m, s.Timeout.Duration)
	}
	return m
}

// StateRedacted is State with a password in its URL hidden, for logs and
// output.
func (c *Config) StateRedacted() string {
	if c.Redis != nil {
		return c.Redis.String()
	}
	return c.State
}
