package mailproxy

import (
	"bytes"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/breakerbox/breakerbox/breaker"
)

// benchTargets are the ways a client reaches a provider on loopback: straight
// (plain, or TLS as a client does without breakerbox) and through the relay
// (plain to the relay; plain, or TLS, from the relay to the provider).
func benchTargets(b *testing.B, proto Protocol, setup func(*fakeServer)) []struct {
	name string
	dial func() *client
} {
	ca := newTestCA(b, b.TempDir())
	plain := newFakeServer(b, proto, nil, setup)
	secure := newFakeServer(b, proto, ca.serverConfig(), setup)
	cfg := breaker.Config{FailureThreshold: 1 << 20}
	viaPlain := startRelay(b, proto, plain.addr(), Plaintext, nil, cfg)
	viaTLS := startRelay(b, proto, secure.addr(), ImplicitTLS, ca.pool, cfg)
	b.Cleanup(func() {
		for _, r := range []*relayUnderTest{viaPlain, viaTLS} {
			r.settle()
			if s := r.b.Snapshot(); s.Failures != 0 {
				b.Errorf("%d failed sessions", s.Failures)
			}
		}
	})
	return []struct {
		name string
		dial func() *client
	}{
		{"direct", func() *client { return dial(b, plain.addr()) }},
		{"relay", func() *client { return dial(b, viaPlain.addr) }},
		{"direct-tls", func() *client {
			c, err := tls.Dial("tcp", secure.addr(), &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
			if err != nil {
				b.Fatal(err)
			}
			return wrap(b, c)
		}},
		{"relay-tls", func() *client { return dial(b, viaTLS.addr) }},
	}
}

// BenchmarkSMTPSession is one whole SMTP session (connect, greeting, EHLO,
// MAIL, RCPT, DATA with a 1 KB message, QUIT) straight to a provider on
// loopback, and through the relay: the difference is the relay's overhead
// per session (one more loopback connection, the breaker's ticket, the
// parsing).
func BenchmarkSMTPSession(b *testing.B) {
	msg := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 16) + ".\r\n"
	for _, target := range benchTargets(b, SMTP, func(f *fakeServer) { f.record = false }) {
		b.Run(target.name, func(b *testing.B) {
			for b.Loop() {
				cl := target.dial()
				cl.smtpReply()
				for _, s := range []string{"EHLO c\r\n", "MAIL FROM:<a@example.com>\r\n", "RCPT TO:<b@example.com>\r\n", "DATA\r\n", msg, "QUIT\r\n"} {
					cl.send(s)
					if cl.smtpReply() == "" {
						b.Fatal("session ended early")
					}
				}
				_ = cl.c.Close()
			}
		})
	}
}

// BenchmarkIMAPFetch fetches a 1 MB message over one IMAP session, straight
// and through the relay: throughput in MB/s.
func BenchmarkIMAPFetch(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n"), (1<<20)/78)
	for _, target := range benchTargets(b, IMAP, func(f *fakeServer) { f.record, f.fetch = false, body }) {
		b.Run(target.name, func(b *testing.B) {
			cl := target.dial()
			cl.imapUntil("*")
			cl.send("a LOGIN user secret\r\n")
			cl.imapUntil("a")
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				cl.got.Reset()
				cl.send("f FETCH 1 BODY[]\r\n")
				if !strings.HasPrefix(cl.imapUntil("f"), "f OK") {
					b.Fatal("FETCH failed")
				}
			}
			_ = cl.c.Close()
		})
	}
}
