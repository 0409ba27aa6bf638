package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

func TestDefaultCarriesADR002sMailServices(t *testing.T) {
	c := config.Default()
	want := []struct {
		name, protocol, upstream, tls string
		threshold                     int
		open                          time.Duration
	}{
		{"gmail-smtp", "smtp", "smtp.gmail.com:465", "implicit", 10, 120 * time.Second},
		{"office365-smtp", "smtp", "smtp.office365.com:587", "starttls", 10, 120 * time.Second},
		{"gmail-imap", "imap", "imap.gmail.com:993", "implicit", 5, 60 * time.Second},
		{"office365-imap", "imap", "outlook.office365.com:993", "implicit", 5, 60 * time.Second},
	}
	if len(c.Mail) != len(want) {
		t.Fatalf("%d mail circuits, want %d", len(c.Mail), len(want))
	}
	listens := map[string]bool{}
	for i, w := range want {
		m := c.Mail[i]
		if m.Name != w.name || m.Protocol != w.protocol || m.Upstream != w.upstream || m.TLS != w.tls ||
			m.FailureThreshold != w.threshold || m.OpenTimeout.Duration != w.open || m.HalfOpenSuccesses != 2 ||
			m.Timeout.Duration != config.DefaultMailTimeout || !strings.HasPrefix(m.Listen, "127.0.0.1:") {
			t.Errorf("mail[%d] = %+v, want %+v", i, m, w)
		}
		listens[m.Listen] = true
	}
	if len(listens) != len(want) {
		t.Errorf("listen addresses not distinct: %v", listens)
	}
}

func TestMailInheritsDefaults(t *testing.T) {
	c, err := config.Parse("t.yaml", []byte(`
defaults: {failure_threshold: 7, half_open_probes: 2}
services: [{name: a, upstream: "http://127.0.0.1:9000"}]
mail:
  - {name: m, protocol: imap, listen: "127.0.0.1:7143", upstream: "mail.example:143", open_timeout: 10s}
  - {name: p, protocol: smtp, listen: "localhost:7025", upstream: "127.0.0.1:2525", tls: plaintext, timeout: 5s}
`))
	if err != nil {
		t.Fatal(err)
	}
	m, p := c.Mail[0], c.Mail[1]
	if m.FailureThreshold != 7 || m.HalfOpenProbes != 2 || m.OpenTimeout.Duration != 10*time.Second ||
		m.Timeout.Duration != config.DefaultMailTimeout || m.TLS != "starttls" || m.RootCAs != nil {
		t.Errorf("m: %+v", m)
	}
	if p.TLS != "plaintext" || p.Timeout.Duration != 5*time.Second || p.FailureThreshold != 7 {
		t.Errorf("p: %+v", p)
	}
	// A timeout in defaults is the operator's choice for every circuit.
	c, err = config.Parse("t.yaml", []byte("defaults: {timeout: 9s}\n"+svc+
		"mail: [{name: m, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:465'}]\n"))
	if err != nil || c.Mail[0].Timeout.Duration != 9*time.Second {
		t.Errorf("defaults.timeout not inherited: %v %+v", err, c)
	}
}

func TestMailCAFile(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, selfSigned(t), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	doc := func(file string) []byte {
		return []byte(svc + "mail:\n  - name: m\n    protocol: smtp\n    listen: 127.0.0.1:1\n    upstream: x:465\n    ca_file: " + file + "\n")
	}
	c, err := config.Parse("t.yaml", doc(ca))
	if err != nil || c.Mail[0].RootCAs == nil {
		t.Fatalf("good CA file: %v", err)
	}
	again, _ := config.Parse("t.yaml", doc(ca))
	if !c.Mail[0].Equal(again.Mail[0]) {
		t.Error("the same entry read twice is not Equal")
	}
	if nocas, _ := config.Parse("t.yaml", []byte(svc+"mail: [{name: m, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:465'}]\n")); c.Mail[0].Equal(nocas.Mail[0]) {
		t.Error("an entry without CA file is Equal to one with")
	}
	for file, want := range map[string]string{
		filepath.Join(dir, "missing.pem"): `t.yaml:7: mail[0].ca_file: open ` + filepath.Join(dir, "missing.pem") + `: no such file`,
		notPEM:                            `t.yaml:7: mail[0].ca_file: "` + notPEM + `" holds no PEM certificate`,
	} {
		if _, err := config.Parse("t.yaml", doc(file)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ca_file %s: got %v, want %q", file, err, want)
		}
	}
}

func TestBadMailConfig(t *testing.T) {
	const m = "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:7025', upstream: 'x:465'}\n"
	for _, tt := range []struct{ name, yaml, want string }{
		{"no protocol", svc + "mail:\n  - {name: m, listen: '127.0.0.1:1', upstream: 'x:465'}\n", `t.yaml:3: mail[0].protocol: "": want smtp or imap`},
		{"bad protocol", svc + "mail:\n  - {name: m, protocol: pop3, listen: '127.0.0.1:1', upstream: 'x:465'}\n", `mail[0].protocol: "pop3": want smtp or imap`},
		{"typo", svc + "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:1', upstrem: 'x:465'}\n", `t.yaml:3: unknown key "upstrem" in mail[0]; did you mean "upstream"?`},
		{"no upstream", svc + "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:1'}\n", `t.yaml:3: mail[0].upstream: "" is not host:port`},
		{"upstream url", svc + "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:1', upstream: 'smtp://x:465'}\n", `mail[0].upstream: "smtp://x:465" is not host:port`},
		{"no listen", svc + "mail:\n  - {name: m, protocol: smtp, upstream: 'x:465'}\n", `t.yaml:3: mail[0].listen: missing: set a loopback host:port`},
		{"public listen", svc + "mail:\n  - {name: m, protocol: smtp, listen: '0.0.0.0:25', upstream: 'x:465'}\n", `mail[0].listen: "0.0.0.0:25" is not a loopback address`},
		{"named listen", svc + "mail:\n  - {name: m, protocol: smtp, listen: 'mail.example:25', upstream: 'x:465'}\n", `is not a loopback address`},
		{"listen is the proxy", "listen: 127.0.0.1:7025\n" + svc + m, `mail[0].listen: "127.0.0.1:7025" is also the address of listen`},
		{"listen is the admin", "admin: localhost:7025\n" + svc + m, `is also the address of admin`},
		{"listens collide", svc + m + "  - {name: n, protocol: imap, listen: 'localhost:7025', upstream: 'y:993'}\n", `t.yaml:4: mail[1].listen: "localhost:7025" is also the address of mail[0].listen`},
		{"upstream is a listener", svc + m + "  - {name: n, protocol: smtp, listen: '127.0.0.1:7026', upstream: '127.0.0.1:7025', tls: plaintext}\n", `mail[1].upstream: "127.0.0.1:7025" is breakerbox's own mail[0].listen address`},
		{"name of a service", svc + "mail:\n  - {name: a, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:465'}\n", `mail[0].name: "a" is already the name of services[0]`},
		{"name twice", svc + m + "  - {name: m, protocol: imap, listen: '127.0.0.1:2', upstream: 'y:993'}\n", `t.yaml:4: mail[1].name: "m" is already the name of mail[0]`},
		{"bad name", svc + "mail:\n  - {name: Gmail, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:465'}\n", `mail[0].name: "Gmail": want lower-case letters`},
		{"bad tls", svc + "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:465', tls: ssl}\n", `mail[0].tls: "ssl": want implicit, starttls or plaintext`},
		{"port implies no tls", svc + "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:2525'}\n", `mail[0].tls: missing, and port 2525 does not imply one`},
		{"ca with plaintext", svc + "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:25', tls: plaintext, ca_file: /dev/null}\n", `mail[0].ca_file: set with tls: plaintext`},
		{"bad threshold", svc + "mail:\n  - {name: m, protocol: smtp, listen: '127.0.0.1:1', upstream: 'x:465', failure_threshold: 0}\n", `mail[0].failure_threshold: 0 is out of range`},
		{"mail not a list", svc + "mail: {name: m}\n", "mail: a mapping: want a list"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("t.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, tt.want)
			}
		})
	}
}

// selfSigned is a PEM CA certificate.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
