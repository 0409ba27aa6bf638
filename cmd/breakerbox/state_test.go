package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/internal/redistest"
)

// checkConfig runs check-config on a config with the given state.
func checkConfig(t *testing.T, state string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("state: "+state+"\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"check-config", path}, &out, &out)
	return out.String(), err
}

func TestCheckConfigReachesRedisOverTLSWithAClientCertificate(t *testing.T) {
	files := redistest.NewTLSFiles(t)
	srv := redistest.StartTLS(t, files)
	tls := "{ca_file: " + files.CA + ", cert_file: " + files.ClientCert + ", key_file: " + files.ClientKey + "}"
	out, err := checkConfig(t, "{url: '"+srv.URL()+"', tls: "+tls+"}")
	if err != nil || !strings.Contains(out, "state "+srv.URL()) {
		t.Fatalf("check-config over TLS: %v\n%s", err, out)
	}
	// Without the client certificate the server refuses the handshake: an
	// error that names the state, not a crash.
	_, err = checkConfig(t, "{url: '"+srv.URL()+"', tls: {ca_file: "+files.CA+"}}")
	if err == nil || !strings.Contains(err.Error(), "state: "+srv.URL()+": redisstate: Redis does not answer") {
		t.Fatalf("check-config without a client certificate: %v", err)
	}
}

func TestCheckConfigWithAnACLUser(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	if err := srv.Client().Do(ctx, "ACL", "SETUSER", "fleet", "on", ">s3cret", "~breakerbox:*", "&breakerbox:*", "+@all", "-@dangerous").Err(); err != nil {
		t.Fatal(err)
	}
	url := "redis://fleet@" + srv.Addr() + "/0"
	t.Setenv(config.EnvRedisPassword, "s3cret")
	if out, err := checkConfig(t, "'"+url+"'"); err != nil {
		t.Fatalf("check-config as an ACL user, password from %s: %v\n%s", config.EnvRedisPassword, err, out)
	}
	t.Setenv(config.EnvRedisPassword, "wrong")
	_, err := checkConfig(t, "'"+url+"'")
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("check-config with a wrong password: %v, want Redis's WRONGPASS and no password", err)
	}
}

func TestCheckConfigFindsThePrimaryThroughSentinels(t *testing.T) {
	s := redistest.StartSentinel(t, 0, 1)
	out, err := checkConfig(t, "{sentinel: {master: "+s.Master+", addrs: ['"+strings.Join(s.Addrs(), "', '")+"']}}")
	if err != nil || !strings.Contains(out, "redis sentinel (master "+s.Master) {
		t.Fatalf("check-config with Sentinel: %v\n%s", err, out)
	}
}

func TestCheckConfigReachesARedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	out, err := checkConfig(t, "{cluster: {addrs: ['"+c.Addrs()[0]+"']}}")
	if err != nil || !strings.Contains(out, "redis cluster (seeds "+c.Addrs()[0]) {
		t.Fatalf("check-config with a cluster: %v\n%s", err, out)
	}
}
