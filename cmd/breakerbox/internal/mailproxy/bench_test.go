package mailproxy

import (
	"bytes"
	"strings"
	"testing"

	"github.com/breakerbox/breakerbox/breaker"
)

// BenchmarkSMTPSession is one whole SMTP session (connect, greeting, EHLO,
// MAIL, RCPT, DATA with a 1 KB message, QUIT) straight to a provider on
// loopback, and through the relay: the difference is the relay's overhead
// per session (one more loopback connection, the breaker's ticket, the
// parsing).
func BenchmarkSMTPSession(b *testing.B) {
	fake := newFakeServer(b, SMTP, nil, func(f *fakeServer) { f.record = false })
	r := startRelay(b, SMTP, fake.addr(), Plaintext, nil, breaker.Config{FailureThreshold: 1 << 20})
	msg := "Subject: bench\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 16) + ".\r\n"
	for _, c := range []struct{ name, addr string }{{"direct", fake.addr()}, {"relay", r.addr}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				cl := dial(b, c.addr)
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
	r.settle()
	if s := r.b.Snapshot(); s.Failures != 0 {
		b.Fatalf("%d failed sessions", s.Failures)
	}
}

// BenchmarkIMAPFetch fetches a 1 MB message over one IMAP session, straight
// and through the relay: throughput in MB/s.
func BenchmarkIMAPFetch(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\r\n"), (1<<20)/78)
	fake := newFakeServer(b, IMAP, nil, func(f *fakeServer) { f.record, f.fetch = false, body })
	r := startRelay(b, IMAP, fake.addr(), Plaintext, nil, breaker.Config{})
	for _, c := range []struct{ name, addr string }{{"direct", fake.addr()}, {"relay", r.addr}} {
		b.Run(c.name, func(b *testing.B) {
			cl := dial(b, c.addr)
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
