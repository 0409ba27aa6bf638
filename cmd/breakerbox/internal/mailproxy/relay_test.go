package mailproxy

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// relayUnderTest is a Listener on a free loopback port, with its breaker on
// a manual clock and its log in a buffer.
type relayUnderTest struct {
	l     *Listener
	addr  string
	b     *breaker.Breaker
	clock *breakertest.Clock
	log   *syncbuf.Buffer
	done  chan error
}

func startRelay(t testing.TB, proto Protocol, upstream string, mode TLSMode, pool *x509.CertPool, cfg breaker.Config, tune ...func(*Listener)) *relayUnderTest {
	t.Helper()
	r := &relayUnderTest{clock: breakertest.NewClock(), log: &syncbuf.Buffer{}, done: make(chan error, 1)}
	if cfg.Name == "" {
		cfg.Name = "mail-test"
	}
	cfg.Clock, cfg.CountSuccesses = r.clock, true
	cfg.Logger = slog.New(slog.NewTextHandler(r.log, nil))
	b, err := breaker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.b = b
	r.l = &Listener{Name: cfg.Name, Protocol: proto, Upstream: upstream, TLSMode: mode, RootCAs: pool, Breaker: b,
		Logger: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, f := range tune {
		f(r.l)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	go func() { r.done <- r.l.Serve(ln) }()
	t.Cleanup(func() {
		_ = r.l.Close()
		if err := <-r.done; !errors.Is(err, ErrListenerClosed) {
			t.Errorf("Serve returned %v, want ErrListenerClosed", err)
		}
	})
	return r
}

// settle waits for every session in progress to end and report.
func (r *relayUnderTest) settle() {
	for i := 0; ; i++ {
		r.l.mu.Lock()
		n := len(r.l.conns)
		r.l.mu.Unlock()
		if n == 0 {
			return
		}
		if i == 30000 {
			panic("sessions still running after 30 s")
		}
		time.Sleep(time.Millisecond)
	}
}

type counts struct{ successes, failures, ignored uint64 }

func (r *relayUnderTest) counts() counts {
	s := r.b.Snapshot()
	return counts{s.Successes, s.Failures, s.Ignored}
}

// client is a raw mail client: it sends what it is told and reads replies
// whole (multi-line SMTP replies; IMAP responses with their literals).
type client struct {
	t   testing.TB
	c   net.Conn
	r   *bufio.Reader
	got bytes.Buffer
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return wrap(t, c)
}

func wrap(t testing.TB, c net.Conn) *client {
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(s string) bool {
	_, err := io.WriteString(c.c, s)
	return err == nil
}

// smtpReply reads one reply; "" when the connection ended first.
func (c *client) smtpReply() string {
	var all strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		c.got.WriteString(line)
		all.WriteString(line)
		if err != nil {
			return ""
		}
		if len(line) < 4 || line[3] != '-' {
			return all.String()
		}
	}
}

// imapUntil reads responses until the tagged one (or the greeting when tag
// is "*"); "" when the connection ended first.
func (c *client) imapUntil(tag string) string {
	for {
		line, err := c.r.ReadString('\n')
		c.got.WriteString(line)
		if err != nil {
			return ""
		}
		for {
			n, ok := literal(tailOf([]byte(line)))
			if !ok {
				break
			}
			if _, err := io.CopyN(&c.got, c.r, n); err != nil {
				return ""
			}
			if line, err = c.r.ReadString('\n'); err != nil {
				return ""
			}
			c.got.WriteString(line)
		}
		if tag == "*" || strings.HasPrefix(line, tag+" ") {
			return line
		}
	}
}

// smtpTransaction is a whole session as a client makes it, until the
// server (or the relay) hangs up.
func smtpTransaction(t testing.TB, addr string) *client {
	c := dial(t, addr)
	steps := []string{"", "EHLO client.test\r\n", "AUTH PLAIN AHVzZXIAc2VjcmV0\r\n", "MAIL FROM:<a@example.com>\r\n",
		"RCPT TO:<b@example.com>\r\n", "DATA\r\n", "Subject: hi\r\n\r\nhello\r\nQUIT\r\n..leading dot\r\n.\r\n", "QUIT\r\n"}
	for _, s := range steps {
		if s != "" && !c.send(s) {
			return c
		}
		if c.smtpReply() == "" {
			return c
		}
	}
	return c
}

func imapTransaction(t testing.TB, addr string) *client {
	c := dial(t, addr)
	if c.imapUntil("*") == "" {
		return c
	}
	for i, cmd := range []string{"LOGIN user secret", "SELECT INBOX", "FETCH 1 BODY[]", "LOGOUT"} {
		tag := fmt.Sprintf("a%d", i+1)
		if !c.send(tag+" "+cmd+"\r\n") || c.imapUntil(tag) == "" {
			return c
		}
	}
	return c
}

// The classification table (package mailbreaker), row by row, through the
// relay: each case is one session against a provider that behaves so.
func TestEveryRowOfTheTableThroughTheRelay(t *testing.T) {
	ca := newTestCA(t, t.TempDir())
	closed := func() string { // a port nobody listens on
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	success, failure, ignored := counts{successes: 1}, counts{failures: 1}, counts{ignored: 1}
	for _, c := range []struct {
		name     string
		proto    Protocol
		greeting string
		replies  map[string]string
		upstream func(t *testing.T) (addr string, mode TLSMode)
		want     counts
	}{
		{name: "smtp healthy session", proto: SMTP, want: success},
		{name: "smtp connect refused", proto: SMTP, upstream: func(*testing.T) (string, TLSMode) { return closed(), Plaintext }, want: failure},
		{name: "smtp DNS failure", proto: SMTP, upstream: func(*testing.T) (string, TLSMode) { return "mail.invalid:465", ImplicitTLS }, want: failure},
		{name: "smtp connection reset at connect", proto: SMTP, greeting: actReset, want: failure},
		{name: "smtp TLS handshake failure (unknown CA)", proto: SMTP, upstream: func(t *testing.T) (string, TLSMode) {
			other := newTestCA(t, t.TempDir())
			return newFakeServer(t, SMTP, other.serverConfig()).addr(), ImplicitTLS
		}, want: failure},
		{name: "smtp TLS handshake failure (provider speaks plain)", proto: SMTP, upstream: func(t *testing.T) (string, TLSMode) {
			return newFakeServer(t, SMTP, nil).addr(), ImplicitTLS
		}, want: failure},
		{name: "smtp greeting 421", proto: SMTP, greeting: "421 4.3.2 System not accepting network messages\r\n", want: failure},
		{name: "smtp greeting 554", proto: SMTP, greeting: "554 No SMTP service here\r\n", want: failure},
		{name: "smtp greeting 421 4.7.0 throttled", proto: SMTP, greeting: "421 4.7.0 Too many connections from your IP\r\n", want: ignored},
		{name: "smtp 421 to MAIL", proto: SMTP, replies: map[string]string{"MAIL": "421 Service not available, closing channel\r\n"}, want: failure},
		{name: "smtp 4.3.x to the message", proto: SMTP, replies: map[string]string{".": "451 4.3.0 Queue file write error\r\n"}, want: failure},
		{name: "smtp 4.4.x to RCPT", proto: SMTP, replies: map[string]string{"RCPT": "450 4.4.2 Connection dropped\r\n"}, want: failure},
		{name: "smtp drop mid-command", proto: SMTP, replies: map[string]string{"RCPT": actDrop}, want: failure},
		{name: "smtp drop during the message", proto: SMTP, replies: map[string]string{".": actReset}, want: failure},
		{name: "smtp reply timeout", proto: SMTP, replies: map[string]string{".": actHang}, want: failure},
		{name: "smtp greeting timeout", proto: SMTP, greeting: actHang, want: failure},
		{name: "smtp 550 5.1.1 unknown recipient", proto: SMTP, replies: map[string]string{"RCPT": "550 5.1.1 <b@example.com>: Recipient address rejected\r\n"}, want: success},
		{name: "smtp 552 5.2.2 mailbox full", proto: SMTP, replies: map[string]string{".": "552 5.2.2 Mailbox full\r\n"}, want: success},
		{name: "smtp 535 5.7.8 bad credentials", proto: SMTP, replies: map[string]string{"AUTH": "535 5.7.8 Username and Password not accepted\r\n"}, want: success},
		{name: "smtp 421 4.7.0 throttled", proto: SMTP, replies: map[string]string{"MAIL": "421 4.7.0 Try again later, closing connection\r\n"}, want: ignored},
		{name: "smtp 451 4.7.1 greylisted", proto: SMTP, replies: map[string]string{"RCPT": "451 4.7.1 Greylisted, please try again later\r\n"}, want: ignored},
		{name: "smtp 454 4.7.0 auth rate limit", proto: SMTP, replies: map[string]string{"AUTH": "454 4.7.0 Too many login attempts\r\n"}, want: ignored},
		{name: "smtp throttled then 4.3.x: the worst counts", proto: SMTP, replies: map[string]string{"RCPT": "451 4.7.1 Greylisted\r\n", ".": "451 4.3.0 error\r\n"}, want: failure},

		{name: "imap healthy session", proto: IMAP, want: success},
		{name: "imap connect refused", proto: IMAP, upstream: func(*testing.T) (string, TLSMode) { return closed(), Plaintext }, want: failure},
		{name: "imap greeting BYE", proto: IMAP, greeting: "* BYE Too many connections\r\n", want: failure},
		{name: "imap greeting NO [UNAVAILABLE]", proto: IMAP, greeting: "* NO [UNAVAILABLE] Backend down\r\n", want: failure},
		{name: "imap NO [UNAVAILABLE] to LOGIN", proto: IMAP, replies: map[string]string{"LOGIN": "{tag} NO [UNAVAILABLE] Try later\r\n"}, want: failure},
		{name: "imap BYE mid-command", proto: IMAP, replies: map[string]string{"SELECT": "* BYE Server shutting down\r\n"}, want: failure},
		{name: "imap drop mid-FETCH", proto: IMAP, replies: map[string]string{"FETCH": "* 1 FETCH (BODY[] {100}\r\npartial\x00" + actDrop}, want: failure},
		{name: "imap reply timeout", proto: IMAP, replies: map[string]string{"SELECT": actHang}, want: failure},
		{name: "imap NO [AUTHENTICATIONFAILED]", proto: IMAP, replies: map[string]string{"LOGIN": "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"}, want: success},
		{name: "imap NO [NONEXISTENT] mailbox", proto: IMAP, replies: map[string]string{"SELECT": "{tag} NO [NONEXISTENT] Unknown Mailbox\r\n"}, want: success},
		{name: "imap throttled", proto: IMAP, replies: map[string]string{"FETCH": "{tag} NO Request is throttled. Suggested Backoff Time: 100 milliseconds\r\n"}, want: ignored},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, mode := "", Plaintext
			var fake *fakeServer
			if c.upstream != nil {
				addr, mode = c.upstream(t)
			} else {
				fake = newFakeServer(t, c.proto, ca.serverConfig(), func(f *fakeServer) {
					if c.greeting != "" {
						f.greeting = c.greeting
					}
					if c.replies != nil {
						f.replies = c.replies
					}
					f.fetch = []byte("Subject: x\r\n\r\n* BYE not a status line\r\na3 NO [UNAVAILABLE] neither\r\n")
				})
				addr, mode = fake.addr(), ImplicitTLS
			}
			r := startRelay(t, c.proto, addr, mode, ca.pool, breaker.Config{FailureThreshold: 100}, func(l *Listener) {
				l.ReplyTimeout, l.DialTimeout = time.Second, 5*time.Second
			})
			var cl *client
			if c.proto == SMTP {
				cl = smtpTransaction(t, r.addr)
			} else {
				cl = imapTransaction(t, r.addr)
			}
			_ = cl.c.Close()
			r.settle()
			if got := r.counts(); got != c.want {
				t.Fatalf("outcome %+v, want %+v\nclient got:\n%s\nlog:\n%s", got, c.want, cl.got.String(), r.log.String())
			}
			if strings.Contains(r.log.String(), "secret") || strings.Contains(r.log.String(), "AHVzZXIAc2VjcmV0") || strings.Contains(r.log.String(), "hello") {
				t.Fatalf("the log carries credentials or content:\n%s", r.log.String())
			}
		})
	}
}
