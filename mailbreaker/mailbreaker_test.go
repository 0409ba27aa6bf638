package mailbreaker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"syscall"
	"testing"

	"github.com/breakerbox/breakerbox/breaker"
)

// One case per row of the table in the package doc, and the edges between rows.
func TestSMTPRepliesFollowTheTable(t *testing.T) {
	for _, c := range []struct {
		code int
		text string
		want breaker.Outcome
	}{
		{250, "2.1.5 Ok", breaker.Success},
		{235, "2.7.0 Authentication successful", breaker.Success},
		{354, "End data with <CR><LF>.<CR><LF>", breaker.Success},
		{421, "Service not available, closing transmission channel", breaker.Failure},
		{421, "4.3.2 System not accepting network messages", breaker.Failure},
		{451, "4.3.0 Error: queue file write error", breaker.Failure},
		{452, "4.3.1 Insufficient system storage", breaker.Failure},
		{450, "4.4.2 Connection dropped", breaker.Failure},
		{451, "Requested action aborted: local error in processing", breaker.Failure},
		{452, "Insufficient system storage", breaker.Failure},
		{421, "4.7.0 Too many connections, slow down", breaker.Ignored},
		{451, "4.7.1 Greylisted, try again later", breaker.Ignored},
		{454, "4.7.0 Too many login attempts, please try again later", breaker.Ignored},
		{450, "4.2.1 Mailbox busy", breaker.Success},
		{452, "4.5.3 Too many recipients", breaker.Success},
		{450, "Mailbox unavailable", breaker.Success},
		{550, "5.1.1 <nobody@example.com>: Recipient address rejected", breaker.Success},
		{552, "5.2.2 Mailbox full", breaker.Success},
		{535, "5.7.8 Username and Password not accepted", breaker.Success},
		{554, "5.7.1 Message rejected as spam", breaker.Success},
		{503, "5.5.1 Bad sequence of commands", breaker.Success},
		{0, "garbage", breaker.Failure},
	} {
		if got := ClassifySMTP(c.code, c.text); got != c.want {
			t.Errorf("ClassifySMTP(%d, %q) = %v, want %v", c.code, c.text, got, c.want)
		}
	}
}

func TestSMTPGreetingOtherThan220IsAnOutageUnlessThrottled(t *testing.T) {
	for _, c := range []struct {
		code int
		text string
		want breaker.Outcome
	}{
		{220, "mx.example.com ESMTP", breaker.Success},
		{421, "4.3.2 Service shutting down", breaker.Failure},
		{421, "Service not available", breaker.Failure},
		{554, "5.3.2 No SMTP service here", breaker.Failure},
		{554, "No SMTP service here", breaker.Failure},
		{421, "4.7.0 Too many concurrent connections from your IP", breaker.Ignored},
	} {
		if got := ClassifySMTPGreeting(c.code, c.text); got != c.want {
			t.Errorf("ClassifySMTPGreeting(%d, %q) = %v, want %v", c.code, c.text, got, c.want)
		}
	}
}

func TestIMAPResponsesFollowTheTable(t *testing.T) {
	for _, c := range []struct {
		line string
		want breaker.Outcome
	}{
		{"a1 OK [CAPABILITY IMAP4rev1] Logged in", breaker.Success},
		{"* OK Still here", breaker.Success},
		{"a2 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)", breaker.Success},
		{"a3 NO [NONEXISTENT] Unknown Mailbox: Archive", breaker.Success},
		{"a3 NO [TRYCREATE] Mailbox doesn't exist", breaker.Success},
		{"a3 NO [OVERQUOTA] Quota exceeded", breaker.Success},
		{"a3 NO [LIMIT] Too many open mailboxes", breaker.Success},
		{"a4 BAD Error in IMAP command: Unknown command", breaker.Success},
		{"a5 NO no reason given", breaker.Success},
		{"a6 NO [UNAVAILABLE] Internal error occurred, refer to server log", breaker.Failure},
		{"NO [UNAVAILABLE] backend down", breaker.Failure},
		{"a7 NO [SERVERBUG] Internal error", breaker.Failure},
		{"* BYE Server shutting down.", breaker.Failure},
		{"* BYE [UNAVAILABLE] Maintenance", breaker.Failure},
		{"a8 NO [THROTTLED] Slow down", breaker.Ignored},
		{"a8 NO Request is throttled. Suggested Backoff Time: 160 milliseconds", breaker.Ignored},
		{"a9 no [unavailable] lower case", breaker.Failure},
		{"HTTP/1.1 400 Bad Request", breaker.Failure},
	} {
		if got := ClassifyIMAP(c.line); got != c.want {
			t.Errorf("ClassifyIMAP(%q) = %v, want %v", c.line, got, c.want)
		}
	}
}

func TestIMAPGreetingOtherThanOKIsAnOutage(t *testing.T) {
	for _, c := range []struct {
		line string
		want breaker.Outcome
	}{
		{"* OK [CAPABILITY IMAP4rev1] Dovecot ready.", breaker.Success},
		{"* PREAUTH IMAP4rev1 server logged in as Smith", breaker.Success},
		{"* BYE Too busy", breaker.Failure},
		{"* NO [UNAVAILABLE] Backend unavailable", breaker.Failure},
		{"", breaker.Failure},
	} {
		if got := ClassifyIMAPGreeting(c.line); got != c.want {
			t.Errorf("ClassifyIMAPGreeting(%q) = %v, want %v", c.line, got, c.want)
		}
	}
}

// smtpError has go-smtp's SMTPError shape; imapError go-imap v2's Error.
type (
	smtpError struct {
		Code         int
		EnhancedCode [3]int
		Message      string
	}
	imapStatus string
	imapError  struct {
		Type imapStatus
		Code imapStatus
		Text string
	}
)

func (e *smtpError) Error() string { return fmt.Sprintf("SMTP error %03d: %s", e.Code, e.Message) }
func (e *imapError) Error() string { return "imap: " + string(e.Type) + " " + e.Text }

func TestClassifyReadsGoClientErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		name string
		err  error
		want breaker.Outcome
	}{
		{"nil", nil, breaker.Success},
		{"net/smtp 550 5.1.1", &textproto.Error{Code: 550, Msg: "5.1.1 user unknown"}, breaker.Success},
		{"net/smtp 421 wrapped", fmt.Errorf("send: %w", &textproto.Error{Code: 421, Msg: "4.3.0 try later"}), breaker.Failure},
		{"net/smtp 554 at connect", AtConnect(&textproto.Error{Code: 554, Msg: "No service"}), breaker.Failure},
		{"net/smtp 554 to a command", &textproto.Error{Code: 554, Msg: "5.7.1 spam"}, breaker.Success},
		{"go-smtp 535 5.7.8", &smtpError{535, [3]int{5, 7, 8}, "bad credentials"}, breaker.Success},
		{"go-smtp 451 4.7.1", &smtpError{451, [3]int{4, 7, 1}, "greylisted"}, breaker.Ignored},
		{"go-smtp 450 4.4.2", &smtpError{450, [3]int{4, 4, 2}, "dropped"}, breaker.Failure},
		{"go-smtp 451 code not set", &smtpError{451, [3]int{0, 0, 0}, "local error"}, breaker.Failure},
		{"go-smtp 554 at connect", AtConnect(&smtpError{554, [3]int{-1, -1, -1}, "go away"}), breaker.Failure},
		{"go-smtp joined", errors.Join(io.EOF, &smtpError{550, [3]int{5, 1, 1}, "unknown"}), breaker.Success},
		{"go-imap AUTHENTICATIONFAILED", &imapError{"NO", "AUTHENTICATIONFAILED", "Invalid credentials"}, breaker.Success},
		{"go-imap UNAVAILABLE", fmt.Errorf("login: %w", &imapError{"NO", "UNAVAILABLE", "try later"}), breaker.Failure},
		{"go-imap BYE at connect", AtConnect(&imapError{"BYE", "", "busy"}), breaker.Failure},
		{"connection refused", refused, breaker.Failure},
		{"DNS", &net.DNSError{Err: "no such host", Name: "smtp.invalid", IsNotFound: true}, breaker.Failure},
		{"TLS", &tls.CertificateVerificationError{Err: errors.New("unknown authority")}, breaker.Failure},
		{"EOF mid-command", io.ErrUnexpectedEOF, breaker.Failure},
		{"deadline", context.DeadlineExceeded, breaker.Failure},
		{"caller cancelled", fmt.Errorf("dial: %w", context.Canceled), breaker.Ignored},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("%s: Classify(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

func TestEnhancedCodeParsing(t *testing.T) {
	for _, c := range []struct {
		text           string
		class, subject int
	}{
		{"4.7.0 rate", 4, 7}, {"5.1.10 x", 5, 1}, {"4.4.2", 4, 4}, {"4.12.345 x", 4, 12},
		{"4.7 x", 0, 0}, {"3.1.1 x", 0, 0}, {"4.7.0x", 0, 0}, {"4..0 x", 0, 0}, {"", 0, 0}, {"4.7.1234 x", 0, 0},
	} {
		if class, subject := enhancedCode(c.text); class != c.class || subject != c.subject {
			t.Errorf("enhancedCode(%q) = %d.%d, want %d.%d", c.text, class, subject, c.class, c.subject)
		}
	}
}
