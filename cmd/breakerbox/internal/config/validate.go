package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/breakerbox/breakerbox/breaker"
)

var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// validate checks what the decoder could not (values against each other),
// fills in defaults, and notes warnings.
func (d *decoder) validate(c *Config) {
	// The environment beats the file, as for the token: a container image
	// sets them so that the embedded default listens beyond its loopback.
	listenField, adminField := "listen", "admin"
	if v := os.Getenv("BREAKERBOX_LISTEN"); v != "" {
		c.Listen, listenField = v, "BREAKERBOX_LISTEN (environment)"
	}
	if v := os.Getenv("BREAKERBOX_ADMIN"); v != "" {
		c.Admin, adminField = v, "BREAKERBOX_ADMIN (environment)"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7070"
	}
	if c.Admin == "" {
		c.Admin = "127.0.0.1:7071"
	}
	listenOK, adminOK := d.hostPort(listenField, c.Listen), d.hostPort(adminField, c.Admin)
	if listenOK && adminOK && sameEndpoint(c.Listen, c.Admin) {
		d.fieldf(adminField, "%q is also the proxy's listen address %q: give the admin listener its own port", c.Admin, c.Listen)
	}
	switch c.ListenEngine {
	case "":
		c.ListenEngine = EngineNetHTTP
	case EngineNetHTTP, EngineFastHTTP:
	default:
		d.fieldf("listen_engine", "%q: want %q (the default) or %q", c.ListenEngine, EngineNetHTTP, EngineFastHTTP)
	}
	d.checkState(c)
	if c.Replica != "" && (len(c.Replica) > 100 || strings.ContainsAny(c.Replica, " \t\r\n:")) {
		d.fieldf("replica", "%q: want a name without spaces or colons, at most 100 characters (default: the host name)", c.Replica)
	}
	if c.Quorum > 1 && c.State == "memory" {
		d.fieldf("quorum", "%d: needs a shared state (state: redis://... or a Redis mapping); remove it for memory", c.Quorum)
	}
	if tok := os.Getenv("BREAKERBOX_ADMIN_TOKEN"); tok != "" {
		c.AdminToken = tok
		d.token("BREAKERBOX_ADMIN_TOKEN (environment)", tok)
	} else if c.AdminToken != "" {
		d.token("admin_token", c.AdminToken)
	}
	for i, h := range c.AdminHosts {
		if h == "" || strings.ContainsAny(h, ":/ ") {
			d.fieldf(fmt.Sprintf("admin_hosts[%d]", i), "%q: want a host name without port, e.g. breakerbox.internal", h)
		}
	}
	if adminOK && !c.loopbackAdmin() && c.AdminToken == "" {
		c.Warnings = append(c.Warnings, fmt.Sprintf("admin: %s is reachable beyond this host and no admin_token is set: "+
			"anyone who can connect reads every circuit and /metrics; bind it to 127.0.0.1 or firewall it", c.Admin))
	}
	c.Limits.Proxy = c.Limits.Proxy.inherit(DefaultLimits.Proxy)
	c.Limits.Admin = c.Limits.Admin.inherit(DefaultLimits.Admin)

	c.Defaults = c.Defaults.inherit(Settings{FailureThreshold: breaker.DefaultFailureThreshold,
		OpenTimeout: Dur(breaker.DefaultOpenTimeout), HalfOpenSuccesses: breaker.DefaultHalfOpenSuccesses,
		HalfOpenProbes: breaker.DefaultHalfOpenProbes, Timeout: Dur(30 * time.Second)})
	if len(c.Services) == 0 {
		d.fieldf("services", "empty: list at least one service with a name and an upstream")
	}
	seen := map[string]int{}
	for i := range c.Services {
		s := &c.Services[i]
		field := fmt.Sprintf("services[%d]", i)
		if _, set := d.lines[field+".name"]; !set { // no name: point at the service
			d.lines[field+".name"] = d.lines[field]
		}
		if !namePattern.MatchString(s.Name) {
			d.fieldf(field+".name", "%q: want lower-case letters, digits, '.', '_' or '-' (it becomes the URL path /<name>/)", s.Name)
		}
		if j, dup := seen[s.Name]; dup {
			d.fieldf(field+".name", "%q is already the name of services[%d]: names must be unique", s.Name, j)
		}
		seen[s.Name] = i
		switch {
		case s.Upstream != "" && len(s.PerRegion) > 0:
			d.fieldf(field, "set either upstream or per_region, not both")
		case s.Upstream == "" && len(s.PerRegion) == 0:
			d.fieldf(field, "no upstream: set upstream (a base URL) or per_region (region: base URL)")
		case s.Upstream != "":
			d.upstream(c, field+".upstream", s.Upstream)
		}
		for _, r := range s.Regions() {
			f := field + ".per_region." + r
			if !namePattern.MatchString(r) {
				d.fieldf(f, "region %q: want lower-case letters, digits, '.', '_' or '-'", r)
			}
			d.upstream(c, f, s.PerRegion[r])
		}
		s.Settings = s.Settings.inherit(c.Defaults)
	}
	d.mail(c, seen)
}

// mail checks the mail circuits; seen holds the services' names, which
// mail names must not repeat (they share the registry and /api/circuits).
func (d *decoder) mail(c *Config, seen map[string]int) {
	own := []struct{ field, addr string }{{"listen", c.Listen}, {"admin", c.Admin}}
	mailTimeout := c.Defaults.Timeout
	if _, set := d.lines["defaults.timeout"]; !set {
		mailTimeout = Dur(DefaultMailTimeout)
	}
	for i := range c.Mail {
		m := &c.Mail[i]
		field := fmt.Sprintf("mail[%d]", i)
		for _, k := range []string{"name", "protocol", "listen", "upstream"} {
			if _, set := d.lines[field+"."+k]; !set { // missing: point at the entry
				d.lines[field+"."+k] = d.lines[field]
			}
		}
		if !namePattern.MatchString(m.Name) {
			d.fieldf(field+".name", "%q: want lower-case letters, digits, '.', '_' or '-', e.g. gmail-smtp", m.Name)
		}
		if j, dup := seen[m.Name]; dup {
			d.fieldf(field+".name", "%q is already the name of services[%d]: circuit names must be unique across services and mail", m.Name, j)
		}
		for j := range i {
			if c.Mail[j].Name == m.Name {
				d.fieldf(field+".name", "%q is already the name of mail[%d]: circuit names must be unique", m.Name, j)
			}
		}
		if !slices.Contains(mailProtocols, m.Protocol) {
			d.fieldf(field+".protocol", "%q: want smtp or imap", m.Protocol)
		}
		d.mailListen(c, field+".listen", m.Listen, own)
		own = append(own, struct{ field, addr string }{field + ".listen", m.Listen})
		d.mailUpstream(field, m, own)
		if m.CAFile != "" {
			m.RootCAs = d.caFile(field+".ca_file", m.CAFile)
		}
		if m.Timeout.Duration == 0 {
			m.Timeout = mailTimeout
		}
		m.Settings = m.Settings.inherit(c.Defaults)
	}
}

// mailListen checks a mail circuit's listen address: loopback only (its
// clients speak in clear, credentials included) and no other listener's.
func (d *decoder) mailListen(c *Config, field, addr string, others []struct{ field, addr string }) {
	if addr == "" {
		d.fieldf(field, "missing: set a loopback host:port mail clients connect to, e.g. 127.0.0.1:2465")
		return
	}
	if !d.hostPort(field, addr) {
		return
	}
	h, _, _ := net.SplitHostPort(addr)
	ips := hostIPs(h)
	loopback := ips != nil
	for _, ip := range ips {
		loopback = loopback && ip.IsLoopback()
	}
	if !loopback {
		d.fieldf(field, "%q is not a loopback address: mail clients speak to it in clear, passwords included; use 127.0.0.1:PORT", addr)
		return
	}
	for _, o := range others {
		if sameEndpoint(addr, o.addr) {
			d.fieldf(field, "%q is also the address of %s: give each listener its own port", addr, o.field)
		}
	}
}

// mailUpstream checks a mail circuit's provider address and TLS mode, the
// mode defaulting by port as package mailproxy does.
func (d *decoder) mailUpstream(field string, m *Mail, own []struct{ field, addr string }) {
	f := field + ".upstream"
	host, port, err := net.SplitHostPort(m.Upstream)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		d.fieldf(f, "%q is not host:port: want the provider's address, e.g. smtp.gmail.com:465", m.Upstream)
		return
	}
	for _, o := range own {
		if sameEndpoint(m.Upstream, o.addr) {
			d.fieldf(f, "%q is breakerbox's own %s address: sessions would loop through it; point it at the provider", m.Upstream, o.field)
		}
	}
	switch {
	case m.TLS != "" && !slices.Contains(mailTLSModes, m.TLS):
		d.fieldf(field+".tls", "%q: want implicit, starttls or plaintext", m.TLS)
	case m.TLS == "" && (port == "465" || port == "993"):
		m.TLS = "implicit"
	case m.TLS == "" && (port == "25" || port == "587" || port == "143"):
		m.TLS = "starttls"
	case m.TLS == "":
		d.fieldf(field+".tls", "missing, and port %s does not imply one: set implicit (TLS at connect) or starttls (or plaintext, for a provider on a trusted network)", port)
	}
	if m.CAFile != "" && m.TLS == "plaintext" {
		d.fieldf(field+".ca_file", "set with tls: plaintext, which verifies no certificate: remove one of them")
	}
}

// caFile reads a PEM file of CA certificates.
func (d *decoder) caFile(field, path string) *x509.CertPool {
	data, err := os.ReadFile(path)
	if err != nil {
		d.fieldf(field, "%v: want a readable PEM file of CA certificates", err)
		return nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		d.fieldf(field, "%q holds no PEM certificate (-----BEGIN CERTIFICATE-----): want the CA certificates the provider's certificate chains to", path)
		return nil
	}
	return pool
}

// hostPort checks a listen address.
func (d *decoder) hostPort(field, v string) bool {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		d.fieldf(field, "%q is not host:port, e.g. 127.0.0.1:7070", v)
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		d.fieldf(field, "%q: port %q is not a number in 1–65535 (or 0: any free port)", v, port)
		return false
	}
	return true
}

func (d *decoder) token(field, tok string) {
	switch {
	case strings.TrimSpace(tok) != tok:
		// A | block keeps its final newline; no client can send it back in
		// a header (HTTP trims it), so the token could never match.
		// Refused rather than trimmed: a secret is used as written or not at all.
		d.fieldf(field, "starts or ends with whitespace or a newline (a | block keeps one): write the token on one line, or use |- to drop the newline")
	case len(tok) < MinTokenLength:
		d.fieldf(field, "%d characters: want at least %d (e.g. the output of `openssl rand -hex 24`)", len(tok), MinTokenLength)
	}
}

// upstream checks an upstream base URL, and that it is not breakerbox
// itself: a request would then loop through the proxy until the process
// runs out of file descriptors.
func (d *decoder) upstream(c *Config, field, raw string) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		d.fieldf(field, "%q is not a URL: want e.g. https://api.example.com", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		d.fieldf(field, "%q: want an absolute http:// or https:// URL", raw)
	case u.Host == "":
		d.fieldf(field, "%q: no host: want e.g. https://api.example.com", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		d.fieldf(field, "%q: no query, fragment or credentials allowed in an upstream base URL", raw)
	default:
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		hp := net.JoinHostPort(u.Hostname(), port)
		for _, l := range []struct{ name, addr string }{{"listen", c.Listen}, {"admin", c.Admin}} {
			if sameEndpoint(hp, l.addr) {
				d.fieldf(field, "%q is breakerbox's own %s address %s: requests would loop through the proxy; point it at the real service", raw, l.name, l.addr)
			}
		}
		// net/http's transport honours HTTP_PROXY, HTTPS_PROXY and NO_PROXY;
		// fasthttp's client does not, and would go around the proxy.
		if c.ListenEngine == EngineFastHTTP {
			if p, err := httpproxy.FromEnvironment().ProxyFunc()(u); err != nil || p != nil {
				d.fieldf(field, "%q: the environment (HTTP_PROXY, HTTPS_PROXY) sends it through a forward proxy, which listen_engine: fasthttp does not use; use listen_engine: net/http, or add the host to NO_PROXY", raw)
			}
		}
	}
}

// sameEndpoint reports whether two host:port addresses reach the same
// socket on this host: same port, and hosts that name the same address
// (localhost is 127.0.0.1 and ::1; 0.0.0.0 or an empty host is every local
// address). Names other than localhost are not resolved: validation must
// not depend on DNS.
func sameEndpoint(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	ia, ib := hostIPs(ha), hostIPs(hb)
	if ia == nil || ib == nil { // names we do not resolve
		return strings.EqualFold(ha, hb)
	}
	if anyAddr(ia) || anyAddr(ib) {
		return isLocal(ia) && isLocal(ib)
	}
	for _, x := range ia {
		for _, y := range ib {
			if x.Equal(y) {
				return true
			}
		}
	}
	return false
}

// hostIPs is the addresses a host names without DNS, or nil for a name.
func hostIPs(h string) []net.IP {
	switch {
	case h == "":
		return []net.IP{net.IPv4zero}
	case strings.EqualFold(h, "localhost"):
		return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	if ip := net.ParseIP(h); ip != nil {
		return []net.IP{ip}
	}
	return nil
}

func anyAddr(ips []net.IP) bool { return len(ips) == 1 && ips[0].IsUnspecified() }

// isLocal reports whether every address is this host's: unspecified,
// loopback, or an address of one of its interfaces.
func isLocal(ips []net.IP) bool {
	var local []net.IP
	for _, ip := range ips {
		if ip.IsUnspecified() || ip.IsLoopback() {
			continue
		}
		if local == nil {
			addrs, _ := net.InterfaceAddrs()
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					local = append(local, n.IP)
				}
			}
		}
		found := false
		for _, l := range local {
			found = found || l.Equal(ip)
		}
		if !found {
			return false
		}
	}
	return true
}

// loopbackAdmin reports whether the admin listener is reachable from this
// host only.
func (c *Config) loopbackAdmin() bool {
	h, _, _ := net.SplitHostPort(c.Admin)
	ips := hostIPs(h)
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return ips != nil
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

// RedactURL hides the secrets of a URL for logs and error messages: the
// password of its user info, and any query parameter named like a secret.
// Whatever the scheme: a mistyped one (reddis://) carries the same password.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			switch strings.ToLower(k) {
			case "password", "pass", "pwd", "token", "secret", "auth":
				q[k] = []string{"xxxxx"}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
