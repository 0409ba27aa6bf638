package mailproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// ADR-002's SMTP profile, with the state machine driven by a manual clock:
// OPEN after the threshold, rejections at connect that never reach the
// provider, one probe session in HALF_OPEN, CLOSED after the successes.
func TestSMTPCircuitOpensRejectsProbesAndCloses(t *testing.T) {
	fake := newFakeServer(t, SMTP, nil, func(f *fakeServer) { f.greeting = "421 4.3.2 System not accepting network messages\r\n" })
	r := startRelay(t, SMTP, fake.addr(), Plaintext, nil,
		breaker.Config{Name: "smtp-gmail", FailureThreshold: 10, OpenTimeout: 120 * time.Second, HalfOpenSuccesses: 2, HalfOpenProbes: 1})

	for i := range 10 {
		if got := dial(t, r.addr).smtpReply(); !strings.HasPrefix(got, "421 4.3.2") {
			t.Fatalf("session %d: greeting %q, want the provider's 421", i, got)
		}
		r.settle()
	}
	if s := r.b.State(); s != breaker.Open {
		t.Fatalf("after 10 failed sessions: %v, want open", s)
	}
	if n := fake.accepts.Load(); n != 10 {
		t.Fatalf("provider saw %d connections, want 10", n)
	}
	for range 5 {
		c := dial(t, r.addr)
		if got := c.smtpReply(); got != "421 4.3.0 smtp-gmail circuit open, retry in 120 s\r\n" {
			t.Fatalf("while open: %q, want the relay's 421 4.3.0", got)
		}
		if _, err := c.r.ReadByte(); err != io.EOF {
			t.Fatalf("while open: the connection stays open (%v), want it closed", err)
		}
	}
	r.settle()
	if n := fake.accepts.Load(); n != 10 {
		t.Fatalf("provider saw %d connections while open, want none beyond the 10", n)
	}
	if s := r.b.Snapshot(); s.Rejected != 5 {
		t.Fatalf("rejected %d, want 5", s.Rejected)
	}

	fake.setGreeting("220 fake.test ESMTP\r\n")
	r.clock.Advance(120 * time.Second)
	probe := dial(t, r.addr)
	if got := probe.smtpReply(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("half-open probe: %q, want the provider's greeting", got)
	}
	if s := r.b.State(); s != breaker.HalfOpen {
		t.Fatalf("during the probe: %v, want half-open", s)
	}
	if got := dial(t, r.addr).smtpReply(); !strings.HasPrefix(got, "421 4.3.0 smtp-gmail circuit open, retry in ") {
		t.Fatalf("second session during the probe: %q, want rejected", got)
	}
	if n := fake.accepts.Load(); n != 11 {
		t.Fatalf("provider saw %d connections, want 11: one probe", n)
	}
	if !probe.send("QUIT\r\n") || !strings.HasPrefix(probe.smtpReply(), "221") {
		t.Fatal("probe: QUIT not answered")
	}
	r.settle()
	if s := r.b.State(); s != breaker.HalfOpen {
		t.Fatalf("after one successful probe: %v, want half-open (2 successes close)", s)
	}
	c := smtpTransaction(t, r.addr)
	_ = c.c.Close()
	r.settle()
	if s := r.b.State(); s != breaker.Closed {
		t.Fatalf("after two successful probes: %v, want closed", s)
	}
}

func TestIMAPCircuitOpenSaysBYEUnavailable(t *testing.T) {
	fake := newFakeServer(t, IMAP, nil, func(f *fakeServer) { f.greeting = "* BYE Too many connections\r\n" })
	r := startRelay(t, IMAP, fake.addr(), Plaintext, nil, breaker.Config{Name: "imap-o365", FailureThreshold: 2, OpenTimeout: 60 * time.Second})
	for range 2 {
		dial(t, r.addr).imapUntil("*")
		r.settle()
	}
	c := dial(t, r.addr)
	if got := c.imapUntil("*"); got != "* BYE [UNAVAILABLE] imap-o365 circuit open, retry in 60 s\r\n" {
		t.Fatalf("while open: %q", got)
	}
	if n := fake.accepts.Load(); n != 2 {
		t.Fatalf("provider saw %d connections, want 2", n)
	}
}

// What the client sends reaches the provider byte for byte, and what the
// provider answers reaches the client byte for byte: SASL exchanges, message
// bodies with lines that look like commands, lines longer than the relay's
// buffer, 8-bit data, BDAT chunks, IMAP literals both ways, IDLE.
func TestSessionsPassThroughByteForByte(t *testing.T) {
	long := strings.Repeat("x", 3*bufSize+17)
	t.Run("smtp", func(t *testing.T) {
		fake := newFakeServer(t, SMTP, nil, func(f *fakeServer) {
			f.replies = map[string]string{"AUTH": "334 VXNlcm5hbWU6\r\n"}
		})
		r := startRelay(t, SMTP, fake.addr(), Plaintext, nil, breaker.Config{})
		c := dial(t, r.addr)
		var sent bytes.Buffer
		c.smtpReply()
		for _, s := range []string{
			"EHLO client.test\r\n", "AUTH LOGIN\r\n", "dXNlcg==\r\n", "MAIL FROM:<a@example.com> BODY=8BITMIME\r\n",
			"RCPT TO:<b@example.com>\r\n", "DATA\r\n",
			"Subject: caf\xc3\xa9\r\n\r\nRCPT TO:<evil@example.com>\r\n..\r\n" + long + "\r\n250 not a reply\r\n.\r\n",
			"BDAT 12 LAST\r\nQUIT\r\nDATA\r\n", "NOOP\r\n", "QUIT\r\n",
		} {
			sent.WriteString(s)
			c.send(s)
			if c.smtpReply() == "" {
				t.Fatalf("no reply to %.20q:\n%s", s, r.log.String())
			}
		}
		r.settle()
		if got := fake.receivedAll(); !bytes.Equal(got, sent.Bytes()) {
			t.Fatalf("provider received %d bytes, client sent %d; they differ", len(got), sent.Len())
		}
		if got := c.got.Bytes(); !bytes.Equal(got, fake.sent()) {
			t.Fatalf("client received %q, provider sent %q", got, fake.sent())
		}
		if got := r.counts(); got != (counts{successes: 1}) {
			t.Fatalf("outcome %+v, want one success", got)
		}
	})
	t.Run("imap", func(t *testing.T) {
		msg := "Subject: x\r\n\r\n* BYE looks like a status\r\na1 NO [UNAVAILABLE] so does this\r\n" + long + "\r\n"
		fake := newFakeServer(t, IMAP, nil, func(f *fakeServer) {
			f.fetch = []byte(msg)
		})
		r := startRelay(t, IMAP, fake.addr(), Plaintext, nil, breaker.Config{})
		c := dial(t, r.addr)
		var sent bytes.Buffer
		send := func(s string) { sent.WriteString(s); c.send(s) }
		c.imapUntil("*")
		send("a1 AUTHENTICATE PLAIN\r\n")
		if got := c.imapUntil("+"); got != "+ \r\n" {
			t.Fatalf("AUTHENTICATE: %q", got)
		}
		send("AHVzZXIAc2VjcmV0\r\n")
		c.imapUntil("a1")
		send("a2 APPEND INBOX {" + itoa(len(msg)) + "}\r\n")
		c.imapUntil("+")
		send(msg + " {3+}\r\nabc\r\n")
		c.imapUntil("a2")
		send("a3 FETCH 1 BODY[]\r\n")
		c.imapUntil("a3")
		send("a4 IDLE\r\n")
		c.imapUntil("+")
		send("DONE\r\n")
		c.imapUntil("a4")
		send("a5 LOGOUT\r\n")
		c.imapUntil("a5")
		r.settle()
		if got := fake.receivedAll(); !bytes.Equal(got, sent.Bytes()) {
			t.Fatalf("provider received %d bytes, client sent %d; they differ", len(got), sent.Len())
		}
		if got := c.got.Bytes(); !bytes.Equal(got, fake.sent()) {
			t.Fatalf("client received %d bytes, provider sent %d; they differ", len(got), len(fake.sent()))
		}
		if got := r.counts(); got != (counts{successes: 1}) {
			t.Fatalf("outcome %+v, want one success:\n%s", got, r.log.String())
		}
	})
}

// A 10 MB attachment streams through: the relay allocates a few buffers,
// not the message.
func TestTenMegabyteAttachmentStreamsInFlatMemory(t *testing.T) {
	raw := make([]byte, 10<<20)
	_, _ = rand.Read(raw)
	var msg bytes.Buffer
	msg.WriteString("Subject: big\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		msg.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	msg.WriteString(enc + "\r\n.\r\n")
	body := msg.Bytes()

	fake := newFakeServer(t, SMTP, nil, func(f *fakeServer) { f.record = false })
	r := startRelay(t, SMTP, fake.addr(), Plaintext, nil, breaker.Config{})
	c := dial(t, r.addr)
	c.smtpReply()
	for _, s := range []string{"EHLO c\r\n", "MAIL FROM:<a@example.com>\r\n", "RCPT TO:<b@example.com>\r\n", "DATA\r\n"} {
		c.send(s)
		c.smtpReply()
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := c.c.Write(body); err != nil {
		t.Fatal(err)
	}
	if got := c.smtpReply(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("end of data: %q", got)
	}
	runtime.ReadMemStats(&after)
	c.send("QUIT\r\n")
	c.smtpReply()
	r.settle()
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("message %d bytes; allocated while relaying it: %d bytes in %d objects", len(body), allocated, after.Mallocs-before.Mallocs)
	if allocated > 1<<20 {
		t.Fatalf("relaying a %d-byte message allocated %d bytes, want < 1 MiB", len(body), allocated)
	}
	if got := fake.received.Load(); got < int64(len(body)) {
		t.Fatalf("provider received %d bytes, want at least the %d of the message", got, len(body))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// An IMAP session that settles into IDLE reports its outcome then, so a
// half-open probe does not hold its slot for the hours an IDLE may last;
// a failure later in that session is reported as a call of its own.
func TestIMAPIdleReportsEarlyAndALaterDropStillCounts(t *testing.T) {
	fake := newFakeServer(t, IMAP, nil, func(f *fakeServer) { f.greeting = "* BYE [UNAVAILABLE] Maintenance\r\n" })
	r := startRelay(t, IMAP, fake.addr(), Plaintext, nil, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute, HalfOpenSuccesses: 1})
	dial(t, r.addr).imapUntil("*")
	r.settle()
	if s := r.b.State(); s != breaker.Open {
		t.Fatalf("after a BYE greeting: %v, want open", s)
	}
	fake.setGreeting("* OK ready\r\n")
	r.clock.Advance(time.Minute)
	c := dial(t, r.addr)
	c.imapUntil("*")
	c.send("a1 LOGIN user secret\r\n")
	c.imapUntil("a1")
	if s := r.b.State(); s != breaker.HalfOpen {
		t.Fatalf("during the probe session: %v, want half-open", s)
	}
	c.send("a2 IDLE\r\n")
	if got := c.imapUntil("+"); got != "+ idling\r\n" {
		t.Fatalf("IDLE: %q", got)
	}
	if s := r.b.State(); s != breaker.Closed {
		t.Fatalf("once the probe session is idling: %v, want closed", s)
	}
	fake.close() // the provider goes away while the client idles
	r.settle()
	if s := r.b.Snapshot(); s.State != breaker.Open || s.Failures != 2 {
		t.Fatalf("after the drop during IDLE: %v with %d failures, want open with 2", s.State, s.Failures)
	}
}

// A reply to nothing (a provider ending a session the client left idle) is
// not an outage.
func TestSMTPUnsolicitedReplyIsNotCounted(t *testing.T) {
	fake := newFakeServer(t, SMTP, nil, func(f *fakeServer) {
		f.replies = map[string]string{"NOOP": "250 2.0.0 Ok\r\n421 4.4.2 fake.test Error: timeout exceeded\r\n"}
	})
	r := startRelay(t, SMTP, fake.addr(), Plaintext, nil, breaker.Config{})
	c := dial(t, r.addr)
	c.smtpReply()
	c.send("NOOP\r\n")
	c.smtpReply()
	if got := c.smtpReply(); !strings.HasPrefix(got, "421 4.4.2") {
		t.Fatalf("unsolicited reply: %q", got)
	}
	_ = c.c.Close()
	r.settle()
	if got := r.counts(); got != (counts{successes: 1}) {
		t.Fatalf("outcome %+v, want a success\n%s", got, r.log.String())
	}
}

// A provider that ends an IDLE with a plain BYE (its idle timeout) is not
// down; one that says BYE [UNAVAILABLE] is.
func TestIMAPByeDuringIdle(t *testing.T) {
	for _, c := range []struct {
		bye  string
		want counts
	}{
		{"* BYE Disconnected for inactivity.\r\n", counts{successes: 1}},
		{"* BYE [UNAVAILABLE] Shutting down\r\n", counts{successes: 1, failures: 1}},
	} {
		fake := newFakeServer(t, IMAP, nil, func(f *fakeServer) { f.replies = map[string]string{"IDLE": "+ idling\r\n" + c.bye} })
		r := startRelay(t, IMAP, fake.addr(), Plaintext, nil, breaker.Config{FailureThreshold: 10})
		cl := dial(t, r.addr)
		cl.imapUntil("*")
		cl.send("a1 IDLE\r\n")
		cl.imapUntil("+")
		cl.imapUntil("*")
		_ = cl.c.Close()
		r.settle()
		if got := r.counts(); got != c.want {
			t.Errorf("%q during IDLE: outcome %+v, want %+v", c.bye, got, c.want)
		}
	}
}

// HALF_OPEN admits HalfOpenProbes sessions at once, and no more.
func TestHalfOpenAdmitsHalfOpenProbesSessions(t *testing.T) {
	fake := newFakeServer(t, SMTP, nil)
	r := startRelay(t, SMTP, fake.addr(), Plaintext, nil, breaker.Config{FailureThreshold: 1, OpenTimeout: time.Minute, HalfOpenProbes: 2})
	fake.setGreeting("421 4.3.2 down\r\n")
	dial(t, r.addr).smtpReply()
	r.settle()
	fake.setGreeting("220 fake.test ESMTP\r\n")
	r.clock.Advance(time.Minute)
	for i := range 2 {
		if got := dial(t, r.addr).smtpReply(); !strings.HasPrefix(got, "220 ") {
			t.Fatalf("probe %d: %q, want the provider's greeting", i+1, got)
		}
	}
	if got := dial(t, r.addr).smtpReply(); !strings.HasPrefix(got, "421 4.3.0 mail-test circuit open") {
		t.Fatalf("third session with two probes in flight: %q, want rejected", got)
	}
	if n := fake.accepts.Load(); n != 3 {
		t.Fatalf("provider saw %d connections, want 3 (the failure and two probes)", n)
	}
}
