package config

import (
	"strings"
	"testing"
)

func TestListenAndAdminFromTheEnvironment(t *testing.T) {
	t.Setenv("BREAKERBOX_LISTEN", "0.0.0.0:7070")
	t.Setenv("BREAKERBOX_ADMIN", "0.0.0.0:7071")
	cfg, err := Parse("t.yaml", []byte("listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:7070" || cfg.Admin != "0.0.0.0:7071" {
		t.Fatalf("listen %s, admin %s: the environment must win over the file", cfg.Listen, cfg.Admin)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "no admin_token is set") {
		t.Fatalf("an admin listener beyond loopback without a token must warn: %q", cfg.Warnings)
	}

	t.Setenv("BREAKERBOX_ADMIN", "7071")
	_, err = Parse("t.yaml", []byte("services: [{name: a, upstream: 'http://127.0.0.1:9'}]"))
	if err == nil || !strings.Contains(err.Error(), `BREAKERBOX_ADMIN (environment): "7071" is not host:port`) {
		t.Fatalf("a bad BREAKERBOX_ADMIN: %v", err)
	}
	t.Setenv("BREAKERBOX_ADMIN", "0.0.0.0:7070")
	_, err = Parse("t.yaml", []byte("services: [{name: a, upstream: 'http://127.0.0.1:9'}]"))
	if err == nil || !strings.Contains(err.Error(), "BREAKERBOX_ADMIN (environment)") || !strings.Contains(err.Error(), "its own port") {
		t.Fatalf("admin on the proxy's port: %v", err)
	}
}
