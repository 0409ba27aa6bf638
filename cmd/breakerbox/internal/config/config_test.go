package config_test

import (
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
}

func TestInheritance(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`
defaults: {failure_threshold: 7, timeout: 5s}
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
}

func TestBadConfigNamesFieldAndFix(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"empty", ``, "t.yaml: empty file"},
		{"no services", `listen: 127.0.0.1:1`, "services: empty"},
		{"unknown key", "services:\n  - {name: a, upstream: 'http://x', retries: 3}", `field retries not found`},
		{"unknown top key", "servics: []", `field servics not found`},
		{"duration without unit", "services:\n  - {name: a, upstream: 'http://x', open_timeout: 60}", `"60" is not a duration: write it with a unit`},
		{"negative duration", "services:\n  - {name: a, upstream: 'http://x', timeout: -1s}", "services[0].timeout: -1s: want a positive duration"},
		{"negative threshold", "defaults: {failure_threshold: -1}\nservices: [{name: a, upstream: 'http://x'}]", "defaults.failure_threshold: -1: want a whole number ≥ 1"},
		{"relative upstream", "services: [{name: a, upstream: 'api.example.com'}]", `services[0].upstream: "api.example.com": want an absolute http:// or https:// URL`},
		{"ftp upstream", "services: [{name: a, upstream: 'ftp://x'}]", "want an absolute http:// or https:// URL"},
		{"upstream with query", "services: [{name: a, upstream: 'http://x/?k=v'}]", "no query"},
		{"both upstreams", "services: [{name: a, upstream: 'http://x', per_region: {r: 'http://y'}}]", "either upstream or per_region"},
		{"no upstream", "services: [{name: a}]", "services[0]: no upstream"},
		{"duplicate name", "services: [{name: a, upstream: 'http://x'}, {name: a, upstream: 'http://y'}]", `services[1].name: "a" is already the name of services[0]`},
		{"unsafe name", "services: [{name: '../etc', upstream: 'http://x'}]", `services[0].name: "../etc": want lower-case letters`},
		{"bad region", "services: [{name: g, per_region: {'EU West': 'http://x'}}]", `region "EU West"`},
		{"bad region upstream", "services: [{name: g, per_region: {eu: 'x'}}]", "services[0].per_region.eu:"},
		{"bad listen", "listen: 7070\nservices: [{name: a, upstream: 'http://x'}]", `listen: "7070" is not host:port`},
		{"same ports", "listen: 127.0.0.1:1\nadmin: 127.0.0.1:1\nservices: [{name: a, upstream: 'http://x'}]", "admin: \"127.0.0.1:1\" is also the proxy's listen address"},
		{"bad state", "state: disk\nservices: [{name: a, upstream: 'http://x'}]", `state: "disk": want memory`},
		{"redis url without host", "state: 'redis:///0'\nservices: [{name: a, upstream: 'http://x'}]", `state: "redis:///0": no host`},
		{"redis url bad db", "state: 'redis://127.0.0.1:6379/x'\nservices: [{name: a, upstream: 'http://x'}]", `database "x" is not a number`},
		{"redis url bad port", "state: 'redis://127.0.0.1:99999/0'\nservices: [{name: a, upstream: 'http://x'}]", `port "99999"`},
		{"quorum without redis", "quorum: 2\nservices: [{name: a, upstream: 'http://x'}]", "quorum: 2: needs a shared state"},
		{"negative quorum", "state: 'redis://127.0.0.1:6379/0'\nquorum: -1\nservices: [{name: a, upstream: 'http://x'}]", "quorum: -1: must be ≥ 0"},
		{"services not a list", "services: {name: a}", "cannot unmarshal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("t.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "t.yaml: ") {
				t.Fatalf("got %v\nwant an error starting with the file name and containing %q", err, tt.want)
			}
		})
	}
}

func TestAdminTokenFromEnvironment(t *testing.T) {
	t.Setenv("BREAKERBOX_ADMIN_TOKEN", "from-env")
	c, err := config.Parse("t.yaml", []byte("admin_token: from-file\nservices: [{name: a, upstream: 'http://x'}]"))
	if err != nil || c.AdminToken != "from-env" {
		t.Fatalf("token %q err %v", c.AdminToken, err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := config.Load("/nonexistent/breakerbox.yaml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/breakerbox.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestRedisStateIsAccepted(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte("state: 'redis://user:pw@127.0.0.1:6379/2'\nquorum: 2\nservices: [{name: a, upstream: 'http://x'}]"))
	if err != nil {
		t.Fatal(err)
	}
	if c.State != "redis://user:pw@127.0.0.1:6379/2" || c.Quorum != 2 {
		t.Fatalf("state %q quorum %d", c.State, c.Quorum)
	}
}
