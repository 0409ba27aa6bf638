package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// writeFile writes a file of the test and returns its path.
func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadRedisStateNamesTheFieldAndTheFix(t *testing.T) {
	t.Setenv(config.EnvRedisPassword, "")
	t.Setenv(config.EnvRedisSentinelPassword, "")
	files := redistest.NewTLSFiles(t)
	empty := writeFile(t, "empty", "\n")
	twoLines := writeFile(t, "two", "a\nb\n")
	notPEM := writeFile(t, "x.pem", "not a certificate")
	for _, tc := range []struct{ name, state, want string }{
		{"empty mapping", "{}", "state: no Redis: set url (one server), sentinel"},
		{"two ways", "{url: 'redis://h:1/0', cluster: {addrs: ['h:2']}}", "state: set one of url, sentinel and cluster"},
		{"url scheme", "{url: 'http://h:1'}", `state.url: "http://h:1": want redis://`},
		{"url no host", "{url: 'redis:///0'}", `state.url: "redis:///0": no host`},
		{"url and username", "{url: 'redis://u@h:1/0', username: v}", "state.username: set with a URL, which names its own user"},
		{"url and db", "{url: 'redis://h:1/0', db: 2}", "state.db: set with a URL, which names its own database"},
		{"tls with redis://", "{url: 'redis://h:1/0', tls: {}}", "state.tls: set with a redis:// URL, which is plaintext: write rediss://"},
		{"password in file", "{url: 'redis://h:1/0', password: x}", "state.password: keep the password out of the config: put it in a file named by password_file, or in the environment variable BREAKERBOX_REDIS_PASSWORD"},
		{"password twice", "{url: 'redis://:pw@h:1/0', password_file: " + empty + "}", "state.password_file: set with a URL that holds a password: keep one"},
		{"password file missing", "{url: 'redis://h:1/0', password_file: /nonexistent/pw}", "state.password_file: open /nonexistent/pw: no such file or directory: want a readable file holding the password"},
		{"password file empty", "{url: 'redis://h:1/0', password_file: " + empty + "}", "is empty: want the password on one line"},
		{"password file two lines", "{url: 'redis://h:1/0', password_file: " + twoLines + "}", "holds more than one line"},
		{"sentinel no master", "{sentinel: {addrs: ['h:26379']}}", "state.sentinel.master: empty: want the name the sentinels monitor the primary under"},
		{"sentinel no addrs", "{sentinel: {master: m}}", "state.sentinel.addrs: empty: list the sentinels"},
		{"sentinel bad addr", "{sentinel: {master: m, addrs: ['h']}}", `state.sentinel.addrs[0]: "h" is not host:port`},
		{"sentinel port 0", "{sentinel: {master: m, addrs: ['h:0']}}", `state.sentinel.addrs[0]: "h:0": port 0 is not an address to dial`},
		{"cluster port 00", "{cluster: {addrs: ['h:1', 'h:00']}}", `state.cluster.addrs[1]: "h:00": port 0 is not an address to dial`},
		{"sentinel addr twice", "{sentinel: {master: m, addrs: ['h:1', 'h:1']}}", `state.sentinel.addrs[1]: "h:1" is listed twice`},
		{"sentinel addrs not a list", "{sentinel: {master: m, addrs: 'h:1'}}", "state.sentinel.addrs: \"h:1\": want a list"},
		{"sentinel typo", "{sentinel: {mastr: m, addrs: ['h:1']}}", `unknown key "mastr" in state.sentinel; did you mean "master"?`},
		{"cluster no addrs", "{cluster: {addrs: []}}", "state.cluster.addrs: empty: list seed nodes of the cluster"},
		{"cluster db", "{cluster: {addrs: ['h:1']}, db: 1}", "state.db: 1: a Redis Cluster has only database 0; remove it"},
		{"db out of range", "{sentinel: {master: m, addrs: ['h:1']}, db: -1}", "state.db: -1 is out of range"},
		{"tls cert without key", "{url: 'rediss://h:1/0', tls: {cert_file: " + files.ClientCert + "}}", "state.tls.key_file: empty while cert_file is set"},
		{"tls key without cert", "{url: 'rediss://h:1/0', tls: {key_file: " + files.ClientKey + "}}", "state.tls.cert_file: empty while key_file is set"},
		{"tls cert and key mismatch", "{url: 'rediss://h:1/0', tls: {cert_file: " + files.ClientCert + ", key_file: " + files.ServerKey + "}}", "state.tls.cert_file: tls: private key does not match public key"},
		{"tls ca not PEM", "{url: 'rediss://h:1/0', tls: {ca_file: " + notPEM + "}}", "state.tls.ca_file: \"" + notPEM + "\" holds no PEM certificate"},
		{"tls unknown key", "{url: 'rediss://h:1/0', tls: {ca: x}}", `unknown key "ca" in state.tls`},
		{"timeout without unit", "{url: 'redis://h:1/0', timeout: 100}", "state.timeout: \"100\" is not a duration: write it with a unit"},
		{"timeout too small", "{url: 'redis://h:1/0', timeout: 1ms}", "state.timeout: 1ms is out of range"},
		{"quorum with memory", "memory\nquorum: 2", "quorum: 2: needs a shared state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse("t.yaml", []byte("state: "+tc.state+"\n"+svc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

func TestRedisStateForms(t *testing.T) {
	t.Setenv(config.EnvRedisPassword, "")
	t.Setenv(config.EnvRedisSentinelPassword, "")
	files := redistest.NewTLSFiles(t)
	pw := writeFile(t, "pw", "s3cret\n")
	for _, tc := range []struct {
		name, state string
		env         map[string]string
		want        redis.UniversalOptions
		client      string // the client NewUniversalClient makes
		tls         bool
		desc        string // StateRedacted
	}{
		{name: "short url", state: "'redis://u:pw@h:1/2'",
			want: redis.UniversalOptions{Addrs: []string{"h:1"}, Username: "u", Password: "pw", DB: 2}, client: "*redis.Client",
			desc: "redis://u:xxxxx@h:1/2"},
		{name: "url, password from the environment", state: "'redis://u@h:1/0'", env: map[string]string{config.EnvRedisPassword: "envpw"},
			want: redis.UniversalOptions{Addrs: []string{"h:1"}, Username: "u", Password: "envpw"}, client: "*redis.Client", desc: "redis://u@h:1/0"},
		{name: "url with a password file", state: "{url: 'redis://u@h:1/0', password_file: " + pw + "}",
			want: redis.UniversalOptions{Addrs: []string{"h:1"}, Username: "u", Password: "s3cret"}, client: "*redis.Client", desc: "redis://u@h:1/0"},
		{name: "rediss", state: "'rediss://h:1/0'", want: redis.UniversalOptions{Addrs: []string{"h:1"}}, client: "*redis.Client", tls: true,
			desc: "rediss://h:1/0"},
		{name: "rediss with a CA and a client certificate",
			state: "{url: 'rediss://h:1/0', tls: {ca_file: " + files.CA + ", cert_file: " + files.ClientCert + ", key_file: " + files.ClientKey + ", server_name: redis.internal}}",
			want:  redis.UniversalOptions{Addrs: []string{"h:1"}}, client: "*redis.Client", tls: true, desc: "rediss://h:1/0"},
		{name: "sentinel", state: "{sentinel: {master: m, addrs: ['a:26379', 'b:26379'], password_file: " + pw + "}, username: u, db: 3}",
			env:  map[string]string{config.EnvRedisPassword: "envpw"},
			want: redis.UniversalOptions{MasterName: "m", Addrs: []string{"a:26379", "b:26379"}, SentinelPassword: "s3cret", Username: "u", Password: "envpw", DB: 3},
			// NewFailoverClient makes a *redis.Client that asks the sentinels
			client: "*redis.Client", desc: "redis sentinel (master m, sentinels a:26379,b:26379), user u"},
		{name: "cluster with TLS", state: "{cluster: {addrs: ['a:1']}, password_file: " + pw + ", tls: {}}",
			want:   redis.UniversalOptions{Addrs: []string{"a:1"}, Password: "s3cret", IsClusterMode: true},
			client: "*redis.ClusterClient", tls: true, desc: "redis cluster (seeds a:1), TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := config.Parse("t.yaml", []byte("state: "+tc.state+"\n"+svc))
			if err != nil {
				t.Fatal(err)
			}
			o := c.Redis.Options()
			got := redis.UniversalOptions{Addrs: o.Addrs, Username: o.Username, Password: o.Password, DB: o.DB,
				MasterName: o.MasterName, SentinelPassword: o.SentinelPassword, IsClusterMode: o.IsClusterMode}
			if !equalOptions(got, tc.want) {
				t.Fatalf("options %+v, want %+v", got, tc.want)
			}
			if (o.TLSConfig != nil) != tc.tls {
				t.Fatalf("TLS %v, want %v", o.TLSConfig != nil, tc.tls)
			}
			cl := redis.NewUniversalClient(o)
			defer cl.Close()
			if typ := typeName(cl); typ != tc.client {
				t.Fatalf("client %s, want %s", typ, tc.client)
			}
			if d := c.StateRedacted(); d != tc.desc || strings.Contains(d, "s3cret") || strings.Contains(d, "envpw") {
				t.Fatalf("StateRedacted = %q, want %q", d, tc.desc)
			}
		})
	}
}

func TestRedisTLSFilesAreLoaded(t *testing.T) {
	files := redistest.NewTLSFiles(t)
	c, err := config.Parse("t.yaml", []byte("state: {url: 'rediss://h:1/0', tls: {ca_file: "+files.CA+", cert_file: "+
		files.ClientCert+", key_file: "+files.ClientKey+", server_name: redis.internal}}\n"+svc))
	if err != nil {
		t.Fatal(err)
	}
	tc := c.Redis.Options().TLSConfig
	if tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "redis.internal" {
		t.Fatalf("TLS config: CAs %v, %d certificates, server name %q", tc.RootCAs != nil, len(tc.Certificates), tc.ServerName)
	}
}

func TestRedisStateEqual(t *testing.T) {
	parse := func(state string) *config.Redis {
		c, err := config.Parse("t.yaml", []byte("state: "+state+"\n"+svc))
		if err != nil {
			t.Fatal(err)
		}
		return c.Redis
	}
	a := parse("{cluster: {addrs: ['a:1', 'b:1']}}")
	if !a.Equal(parse("{cluster: {addrs: ['a:1', 'b:1']}}")) || a.Equal(parse("{cluster: {addrs: ['a:1']}}")) ||
		a.Equal(parse("'redis://a:1/0'")) || a.Equal(nil) {
		t.Fatal("Equal does not tell states apart")
	}
}

func equalOptions(a, b redis.UniversalOptions) bool {
	return strings.Join(a.Addrs, ",") == strings.Join(b.Addrs, ",") && a.Username == b.Username && a.Password == b.Password &&
		a.DB == b.DB && a.MasterName == b.MasterName && a.SentinelPassword == b.SentinelPassword && a.IsClusterMode == b.IsClusterMode
}

func typeName(v any) string {
	switch v.(type) {
	case *redis.Client:
		return "*redis.Client"
	case *redis.ClusterClient:
		return "*redis.ClusterClient"
	}
	return "other"
}
