//go:build unix

package mailproxy

import (
	"bytes"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/mailbreaker"
)

const testMessage = "From: a@example.com\r\nTo: b@example.com\r\nSubject: relay test\r\n\r\nHello through breakerbox.\r\n.leading dot\r\n"

// Go's net/smtp through the relay to a real exim, over implicit TLS and
// STARTTLS: mail is accepted, a rejected recipient and a wrong password are
// the provider answering (successes), and exim killed mid-session is an
// outage.
func TestNetSMTPThroughTheRelayToExim(t *testing.T) {
	ca := newTestCA(t, t.TempDir())
	mta := startExim(t, ca)
	for _, c := range []struct {
		mode TLSMode
		port int
	}{{ImplicitTLS, mta.implicit}, {StartTLS, mta.starttls}} {
		t.Run(string(c.mode), func(t *testing.T) {
			before := len(mta.spooled(t))
			r := startRelay(t, SMTP, net.JoinHostPort("127.0.0.1", itoa(c.port)), c.mode, ca.pool, breaker.Config{FailureThreshold: 100})
			if err := smtp.SendMail(r.addr, smtp.PlainAuth("", "user", "secret", "127.0.0.1"), "a@example.com", []string{"b@example.com"}, []byte(testMessage)); err != nil {
				t.Fatalf("SendMail through the relay: %v\n%s", err, r.log.String())
			}
			err := smtp.SendMail(r.addr, smtp.PlainAuth("", "user", "secret", "127.0.0.1"), "a@example.com", []string{"nobody@example.com"}, []byte(testMessage))
			var te *textproto.Error
			if !errors.As(err, &te) || te.Code != 550 {
				t.Fatalf("to nobody@: %v, want 550", err)
			}
			if o := mailbreaker.Classify(err); o != breaker.Success {
				t.Fatalf("mailbreaker.Classify(%v) = %v, want success", err, o)
			}
			err = smtp.SendMail(r.addr, smtp.PlainAuth("", "user", "wrong", "127.0.0.1"), "a@example.com", []string{"b@example.com"}, []byte(testMessage))
			if !errors.As(err, &te) || te.Code != 535 {
				t.Fatalf("wrong password: %v, want 535", err)
			}
			r.settle()
			if got := r.counts(); got != (counts{successes: 3}) {
				t.Fatalf("outcomes %+v, want 3 successes (mail sent, recipient rejected, password rejected)\n%s", got, r.log.String())
			}
			spooled := mta.spooled(t)
			if len(spooled) != before+1 {
				t.Fatalf("exim holds %d messages, want %d", len(spooled), before+1)
			}
			if !containsAny(spooled, "Hello through breakerbox.\n.leading dot\n") {
				t.Fatalf("exim's copy lacks the body")
			}
		})
	}
	t.Run("exim killed mid-session", func(t *testing.T) {
		r := startRelay(t, SMTP, net.JoinHostPort("127.0.0.1", itoa(mta.implicit)), ImplicitTLS, ca.pool, breaker.Config{FailureThreshold: 100})
		c, err := smtp.Dial(r.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		_ = syscall.Kill(-mta.cmd.Process.Pid, syscall.SIGKILL)
		deadline := time.Now().Add(30 * time.Second)
		for c.Noop() == nil && time.Now().Before(deadline) { // exim's session process may outlive its daemon for a moment
			time.Sleep(10 * time.Millisecond)
		}
		r.settle()
		if got := r.counts(); got.failures != 1 {
			t.Fatalf("outcomes %+v, want a failure\n%s", got, r.log.String())
		}
	})
}

func containsAny(msgs [][]byte, s string) bool {
	for _, m := range msgs {
		if bytes.Contains(m, []byte(s)) {
			return true
		}
	}
	return false
}

// go-imap v2 through the relay to a real dovecot: APPEND (a literal up),
// FETCH (a literal down, with lines that look like status responses), IDLE,
// a wrong password and a missing mailbox (successes); dovecot killed is an
// outage.
func TestGoIMAPThroughTheRelayToDovecot(t *testing.T) {
	ca := newTestCA(t, t.TempDir())
	srv := startDovecot(t, ca)
	body := testMessage + "* BYE not a status line\r\na1 NO [UNAVAILABLE] neither is this\r\n"
	for _, c := range []struct {
		mode TLSMode
		port int
	}{{ImplicitTLS, srv.implicit}, {StartTLS, srv.starttls}} {
		t.Run(string(c.mode), func(t *testing.T) {
			r := startRelay(t, IMAP, net.JoinHostPort("127.0.0.1", itoa(c.port)), c.mode, ca.pool, breaker.Config{FailureThreshold: 100})
			cl := dialIMAP(t, r.addr)
			if err := cl.Login("user-"+string(c.mode), "secret").Wait(); err != nil {
				t.Fatalf("login: %v\n%s", err, r.log.String())
			}
			app := cl.Append("INBOX", int64(len(body)), nil)
			if _, err := app.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
			if err := app.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Wait(); err != nil {
				t.Fatalf("append: %v", err)
			}
			if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
				t.Fatalf("select: %v", err)
			}
			msgs, err := cl.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
			if err != nil || len(msgs) != 1 || len(msgs[0].BodySection) != 1 {
				t.Fatalf("fetch: %v (%d messages)", err, len(msgs))
			}
			if got := string(msgs[0].BodySection[0].Bytes); got != body {
				t.Fatalf("fetched %q, want %q", got, body)
			}
			idle, err := cl.Idle()
			if err != nil {
				t.Fatal(err)
			}
			if err := idle.Close(); err != nil {
				t.Fatal(err)
			}
			if err := idle.Wait(); err != nil {
				t.Fatalf("idle: %v", err)
			}
			if _, err := cl.Select("Nonexistent", nil).Wait(); err == nil {
				t.Fatal("select of a missing mailbox succeeded")
			}
			if err := cl.Logout().Wait(); err != nil {
				t.Fatalf("logout: %v", err)
			}
			_ = cl.Close()

			bad := dialIMAP(t, r.addr)
			var ie *imap.Error
			err = bad.Login("user", "wrong").Wait()
			if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAuthenticationFailed {
				t.Fatalf("wrong password: %v, want NO [AUTHENTICATIONFAILED]", err)
			}
			if o := mailbreaker.Classify(err); o != breaker.Success { // go-imap's *imap.Error, recognised by its fields
				t.Fatalf("mailbreaker.Classify(%v) = %v, want success", err, o)
			}
			_ = bad.Close()
			r.settle()
			if got := r.counts(); got != (counts{successes: 2}) {
				t.Fatalf("outcomes %+v, want 2 successes\n%s", got, r.log.String())
			}
			if strings.Contains(r.log.String(), "secret") || strings.Contains(r.log.String(), "Hello") {
				t.Fatalf("the log carries credentials or content:\n%s", r.log.String())
			}
		})
	}
	t.Run("dovecot killed mid-session", func(t *testing.T) {
		r := startRelay(t, IMAP, net.JoinHostPort("127.0.0.1", itoa(srv.implicit)), ImplicitTLS, ca.pool, breaker.Config{FailureThreshold: 100})
		cl := dialIMAP(t, r.addr)
		if err := cl.Login("user", "secret").Wait(); err != nil {
			t.Fatal(err)
		}
		_ = syscall.Kill(-srv.cmd.Process.Pid, syscall.SIGKILL)
		deadline := time.Now().Add(30 * time.Second)
		for cl.Noop().Wait() == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		_ = cl.Close()
		r.settle()
		if got := r.counts(); got.failures != 1 {
			t.Fatalf("outcomes %+v, want a failure\n%s", got, r.log.String())
		}
	})
}

func dialIMAP(t testing.TB, addr string) *imapclient.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, nil)
	t.Cleanup(func() { _ = c.Close() })
	return c
}
