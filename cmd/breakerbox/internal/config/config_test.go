package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

func TestDefaultCarriesTheSeedsServiceTable(t *testing.T) {
	c := config.Default()
	if c.Listen != "127.0.0.1:7070" || c.Admin != "127.0.0.1:7071" || c.State != "memory" {
		t.Fatalf("listeners/state: %s %s %s", c.Listen, c.Admin, c.State)
	}
	for _, tt := range []struct {
		name                 string
		threshold, successes int
		open                 time.Duration
	}{
		{"cloudflare", 5, 2, time.Minute},
		{"namecheap", 5, 2, time.Minute},
		{"porkbun", 5, 2, time.Minute},
		{"google-admin", 3, 2, 30 * time.Second},
		{"microsoft-graph", 3, 2, 30 * time.Second},
		{"genesys", 10, 3, time.Minute},
	} {
		s, ok := c.Service(tt.name)
		if !ok {
			t.Errorf("service %s missing", tt.name)
			continue
		}
		if s.FailureThreshold != tt.threshold || s.HalfOpenSuccesses != tt.successes || s.OpenTimeout.Duration != tt.open ||
			s.HalfOpenProbes != 1 || s.Timeout.Duration != 30*time.Second {
			t.Errorf("%s: %+v", tt.name, s.Settings)
		}
	}
	g, _ := c.Service("genesys")
	if g.PerRegion["eu-west-1"] != "https://api.mypurecloud.ie" || g.PerRegion["us-east-1"] != "https://api.mypurecloud.com" {
		t.Errorf("genesys regions: %v", g.PerRegion)
	}
	if c.Limits != config.DefaultLimits || len(c.Warnings) != 0 {
		t.Errorf("limits %+v warnings %v", c.Limits, c.Warnings)
	}
}

func TestInheritance(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`
defaults: {failure_threshold: 7, timeout: 5s}
limits: {proxy: {max_connections: 10}, admin: {write_timeout: 5s, max_event_streams: 3}}
services:
  - {name: a, upstream: "http://127.0.0.1:9000"}
  - {name: b, upstream: "http://127.0.0.1:9001/base", open_timeout: 10s, failure_threshold: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Services[0].Settings, c.Services[1].Settings
	if a.FailureThreshold != 7 || a.OpenTimeout.Duration != time.Minute || a.Timeout.Duration != 5*time.Second || a.HalfOpenSuccesses != 2 {
		t.Errorf("a: %+v", a)
	}
	if b.FailureThreshold != 2 || b.OpenTimeout.Duration != 10*time.Second {
		t.Errorf("b: %+v", b)
	}
	if bc := c.Services[1].Breaker(); bc.FailureThreshold != 2 || bc.OpenTimeout != 10*time.Second {
		t.Errorf("breaker config %+v", bc)
	}
	p, ad := c.Limits.Proxy, c.Limits.Admin
	if p.MaxConnections != 10 || p.IdleTimeout != config.DefaultLimits.Proxy.IdleTimeout ||
		ad.WriteTimeout.Duration != 5*time.Second || ad.MaxEventStreams != 3 || ad.MaxConnections != config.DefaultLimits.Admin.MaxConnections {
		t.Errorf("limits %+v", c.Limits)
	}
}

const svc = "services: [{name: a, upstream: 'http://x'}]\n"

func TestBadConfigNamesFileLineFieldAndFix(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"empty", ``, "t.yaml: empty file"},
		{"only comments", "# nothing\n", "t.yaml: empty file"},
		{"no services", `listen: 127.0.0.1:1`, "t.yaml: services: empty"},
		{"unknown key", "services:\n  - {name: a, upstream: 'http://x', retries: 3}", `t.yaml:2: unknown key "retries" in services[0]`},
		{"typo suggests", "services:\n  - name: a\n    upstream: 'http://x'\n    failure_treshold: 3\n", `t.yaml:4: unknown key "failure_treshold" in services[0]; did you mean "failure_threshold"?`},
		{"unknown top key", "servics: []", `t.yaml:1: unknown key "servics" in the top level; did you mean "services"?`},
		{"setting at top level", "failure_threshold: 3\n" + svc, `unknown key "failure_threshold" in the top level; breaker settings go under defaults:`},
		{"merge key", "defaults:\n  <<: {timeout: 1s}\n" + svc, `t.yaml:2: unknown key "<<" in defaults: YAML merge keys are not supported`},
		{"duration without unit", "services:\n  - {name: a, upstream: 'http://x', open_timeout: 60}", `t.yaml:2: services[0].open_timeout: "60" is not a duration: write it with a unit`},
		{"negative duration", "services:\n  - {name: a, upstream: 'http://x', timeout: -1s}", "t.yaml:2: services[0].timeout: -1s is out of range: want 10ms–24h"},
		{"nanosecond timeout", "defaults: {open_timeout: 1ns}\n" + svc, "t.yaml:1: defaults.open_timeout: 1ns is out of range: want 10ms–24h"},
		{"negative threshold", "defaults: {failure_threshold: -1}\n" + svc, "t.yaml:1: defaults.failure_threshold: -1 is out of range: want 1–10000"},
		{"fractional threshold", "defaults:\n  failure_threshold: 5.5\n" + svc, "t.yaml:2: defaults.failure_threshold: 5.5 is not a whole number"},
		{"huge threshold", "defaults: {failure_threshold: 2e9}\n" + svc, "defaults.failure_threshold: 2e9 is out of range: want 1–10000"},
		{"word threshold", "services:\n  - {name: a, upstream: 'http://x'}\n  - {name: b, upstream: 'http://y'}\n  - {name: c, upstream: 'http://z', failure_threshold: five}\n", `t.yaml:4: services[2].failure_threshold: "five" is not a whole number`},
		{"relative upstream", "services: [{name: a, upstream: 'api.example.com'}]", `t.yaml:1: services[0].upstream: "api.example.com": want an absolute http:// or https:// URL`},
		{"ftp upstream", "services: [{name: a, upstream: 'ftp://x'}]", "want an absolute http:// or https:// URL"},
		{"upstream with query", "services: [{name: a, upstream: 'http://x/?k=v'}]", "no query"},
		{"both upstreams", "services: [{name: a, upstream: 'http://x', per_region: {r: 'http://y'}}]", "t.yaml:1: services[0]: set either upstream or per_region"},
		{"no upstream", "services:\n- {name: a}", "t.yaml:2: services[0]: no upstream"},
		{"no name", "services:\n- {upstream: 'http://x'}", `t.yaml:2: services[0].name: "": want lower-case letters`},
		{"duplicate name", "services: [{name: a, upstream: 'http://x'}, {name: a, upstream: 'http://y'}]", `services[1].name: "a" is already the name of services[0]`},
		{"duplicate key", "services: [{name: a, name: b, upstream: 'http://x'}]", `services[0].name: set twice`},
		{"unsafe name", "services: [{name: '../etc', upstream: 'http://x'}]", `services[0].name: "../etc": want lower-case letters`},
		{"bad region", "services: [{name: g, per_region: {'EU West': 'http://x'}}]", `region "EU West"`},
		{"bad region upstream", "services: [{name: g, per_region: {eu: 'x'}}]", "services[0].per_region.eu:"},
		{"bad listen", "listen: 7070\n" + svc, `t.yaml:1: listen: "7070" is not host:port`},
		{"port out of range", "listen: 127.0.0.1:99999\n" + svc, `listen: "127.0.0.1:99999": port "99999" is not a number in 1–65535`},
		{"same ports", "listen: 127.0.0.1:1\nadmin: 127.0.0.1:1\n" + svc, `t.yaml:2: admin: "127.0.0.1:1" is also the proxy's listen address`},
		{"localhost is 127.0.0.1", "listen: 127.0.0.1:7070\nadmin: localhost:7070\n" + svc, `admin: "localhost:7070" is also the proxy's listen address`},
		{"any address overlaps loopback", "listen: 0.0.0.0:7070\nadmin: '[::1]:7070'\n" + svc, `is also the proxy's listen address`},
		{"upstream is the proxy", "listen: 127.0.0.1:7070\nservices: [{name: a, upstream: 'http://localhost:7070/x'}]", `services[0].upstream: "http://localhost:7070/x" is breakerbox's own listen address`},
		{"upstream is the admin", "admin: 127.0.0.1:80\nservices: [{name: a, upstream: 'http://127.0.0.1'}]", `is breakerbox's own admin address`},
		{"unknown engine", "listen_engine: nginx\n" + svc, `listen_engine: "nginx": want "net/http" (the default) or "fasthttp"`},
		{"bad state", "state: disk\n" + svc, `state: "disk": want memory`},
		{"redis url without host", "state: 'redis:///0'\n" + svc, `state: "redis:///0": no host`},
		{"redis url bad db", "state: 'redis://127.0.0.1:6379/x'\n" + svc, `database "x" is not a number`},
		{"redis url bad port", "state: 'redis://127.0.0.1:99999/0'\n" + svc, `port "99999"`},
		{"quorum without redis", "quorum: 2\n" + svc, "quorum: 2: needs a shared state"},
		{"replica with a space", "replica: 'a b'\n" + svc, `replica: "a b": want a name without spaces`},
		{"negative quorum", "state: 'redis://127.0.0.1:6379/0'\nquorum: -1\n" + svc, "quorum: -1 is out of range: want 0–1000"},
		{"services not a list", "services: {name: a}", "services: a mapping: want a list"},
		{"second document", svc + "---\nlisten: 127.0.0.1:1\n", "t.yaml:3: a second YAML document"},
		{"second document with syntax error", svc + "---\nlisten: [\n", "YAML syntax"},
		{"syntax error", "listen: x\nservices:\n  - {name: a\n", "t.yaml:2: YAML syntax"},
		{"short token", "admin_token: abc\n" + svc, "t.yaml:1: admin_token: 3 characters: want at least 16"},
		{"token with newline", "admin_token: |\n  0123456789abcdef0123\n" + svc, "admin_token: starts or ends with whitespace or a newline"},
		{"bad admin host", "admin_hosts: ['a.example:80']\n" + svc, `admin_hosts[0]: "a.example:80": want a host name without port`},
		{"proxy has no event streams", "limits: {proxy: {max_event_streams: 3}}\n" + svc, `unknown key "max_event_streams" in limits.proxy`},
		{"zero connections", "limits: {admin: {max_connections: 0}}\n" + svc, `limits.admin.max_connections: 0 is out of range: want 1–1000000`},
		{"limits typo", "limits: {admin: {idle_timout: 5s}}\n" + svc, `did you mean "idle_timeout"?`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("t.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "t.yaml") {
				t.Fatalf("got %v\nwant an error starting with the file name and containing %q", err, tt.want)
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.File != "t.yaml" {
				t.Fatalf("%T is not a *config.Error", err)
			}
		})
	}
}

func TestEveryErrorIsReportedAtOnce(t *testing.T) {
	_, err := config.Parse("t.yaml", []byte(`listen: 127.0.0.1:99999
defaults:
  failure_threshold: 5.5
  open_timout: 10s
services:
  - {name: a, upstream: 'ftp://x'}
  - {name: a, upstream: 'http://y', timeout: 1ns}
`))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err %v", err)
	}
	want := []string{"t.yaml:1: listen", "t.yaml:3: defaults.failure_threshold", `t.yaml:4: unknown key "open_timout"`,
		"t.yaml:6: services[0].upstream", "t.yaml:7: services[1].timeout", "t.yaml:7: services[1].name"}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestRedisPasswordNeverInErrors(t *testing.T) {
	for _, state := range []string{"reddis://:s3cret@127.0.0.1:6379/0", "redis://:s3cret@127.0.0.1:6379/x",
		"redis://127.0.0.1:6379/0?password=s3cret", "redis://u:s3cret@127.0.0.1:6379/0?x=1"} {
		_, err := config.Parse("t.yaml", []byte("state: '"+state+"'\n"+svc))
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v", state, err)
		}
	}
	if got := config.RedactURL("redis://h:1/0?password=s3cret&db=1"); strings.Contains(got, "s3cret") || !strings.Contains(got, "db=1") {
		t.Errorf("RedactURL: %s", got)
	}
}

func TestAdminReachableWithoutTokenWarns(t *testing.T) {
	for _, tt := range []struct {
		admin, token string
		warn         bool
	}{
		{"127.0.0.1:7071", "", false},
		{"localhost:7071", "", false},
		{"'[::1]:7071'", "", false},
		{"0.0.0.0:7071", "", true},
		{"':7071'", "", true},
		{"breakerbox.internal:7071", "", true},
		{"0.0.0.0:7071", "0123456789abcdef", false},
	} {
		y := "admin: " + tt.admin + "\n" + svc
		if tt.token != "" {
			y += "admin_token: " + tt.token + "\n"
		}
		c, err := config.Parse("t.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(c.Warnings) == 1 && strings.Contains(c.Warnings[0], "no admin_token"); got != tt.warn {
			t.Errorf("admin %s token %q: warnings %v", tt.admin, tt.token, c.Warnings)
		}
	}
}

func TestAdminTokenFromEnvironment(t *testing.T) {
	t.Setenv("BREAKERBOX_ADMIN_TOKEN", "from-env-0123456789")
	c, err := config.Parse("t.yaml", []byte("admin_token: from-file-0123456789\n"+svc))
	if err != nil || c.AdminToken != "from-env-0123456789" {
		t.Fatalf("token %q err %v", c.AdminToken, err)
	}
	t.Setenv("BREAKERBOX_ADMIN_TOKEN", "short")
	if _, err := config.Parse("t.yaml", []byte(svc)); err == nil || !strings.Contains(err.Error(), "BREAKERBOX_ADMIN_TOKEN (environment): 5 characters") {
		t.Fatalf("short env token: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := config.Load("/nonexistent/breakerbox.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/breakerbox.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadIsBounded(t *testing.T) {
	if _, err := config.Load("/dev/zero"); err == nil || !strings.Contains(err.Error(), "/dev/zero: larger than 4 MiB") {
		t.Fatalf("/dev/zero: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	os.WriteFile(big, []byte(svc+"#"+strings.Repeat("x", config.MaxSize)+"\n"), 0o644)
	if _, err := config.Load(big); err == nil || !strings.Contains(err.Error(), "larger than 4 MiB") {
		t.Fatalf("big file: %v", err)
	}
}

func TestHugeConfigIsBounded(t *testing.T) {
	// Each service repeats one anchored mapping: a small file that expands
	// to far more nodes than any real config.
	y := "x: &s {name: a}\nservices: [" + strings.Repeat("*s, ", 40_000) + "]\n"
	_, err := config.Parse("t.yaml", []byte(y))
	if err == nil || !strings.Contains(err.Error(), "more than 100000 YAML nodes") {
		t.Fatalf("err %.300v", err)
	}
}

func TestRedisStateIsAccepted(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte("state: 'redis://user:pw@127.0.0.1:6379/2'\nquorum: 2\n"+svc))
	if err != nil {
		t.Fatal(err)
	}
	if c.State != "redis://user:pw@127.0.0.1:6379/2" || c.Quorum != 2 || c.StateRedacted() != "redis://user:xxxxx@127.0.0.1:6379/2" {
		t.Fatalf("state %q quorum %d", c.State, c.Quorum)
	}
}

func TestListenEngineDefaultsToNetHTTP(t *testing.T) {
	for yaml, want := range map[string]string{svc: config.EngineNetHTTP, "listen_engine: fasthttp\n" + svc: config.EngineFastHTTP,
		"listen_engine: net/http\n" + svc: config.EngineNetHTTP} {
		c, err := config.Parse("t.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		if c.ListenEngine != want {
			t.Errorf("%q: listen_engine %q, want %q", yaml, c.ListenEngine, want)
		}
	}
}

// fasthttp's client does not use a forward proxy from the environment:
// a service the environment routes through one is refused on that engine,
// with the way out named; NO_PROXY and the net/http engine are fine.
func TestFastHTTPRefusesUpstreamsBehindAnEnvironmentProxy(t *testing.T) {
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "REQUEST_METHOD"} {
		t.Setenv(k, "")
	}
	t.Setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
	y := "services:\n  - name: reg\n    upstream: https://api.registrar.example\n"
	_, err := config.Parse("t.yaml", []byte("listen_engine: fasthttp\n"+y))
	want := `services[0].upstream: "https://api.registrar.example": the environment (HTTP_PROXY, HTTPS_PROXY) sends it through a forward proxy, which listen_engine: fasthttp does not use; use listen_engine: net/http, or add the host to NO_PROXY`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
	if _, err := config.Parse("t.yaml", []byte(y)); err != nil { // net/http uses the proxy
		t.Fatalf("net/http: %v", err)
	}
	t.Setenv("NO_PROXY", "api.registrar.example")
	if _, err := config.Parse("t.yaml", []byte("listen_engine: fasthttp\n"+y)); err != nil {
		t.Fatalf("with NO_PROXY: %v", err)
	}
}
