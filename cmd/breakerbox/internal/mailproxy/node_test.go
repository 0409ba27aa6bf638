//go:build unix

package mailproxy

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/brokertest"
)

// nodemailer and imapflow (installed by npm ci from testdata/node's
// lockfile) through the relay to the real exim and dovecot: a message with
// a 1 MB attachment, a rejected recipient, an APPEND and a FETCH of the
// same bytes.
func TestNodemailerAndImapflowThroughTheRelay(t *testing.T) {
	node, errNode := exec.LookPath("node")
	npm, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		if brokertest.InCI() {
			t.Fatal("node and npm are needed, and CI is set: install them (apt-get install nodejs npm)")
		}
		t.Skip("node or npm not found; install them to run this test (apt-get install nodejs npm)")
	}
	ca := newTestCA(t, t.TempDir())
	mta, imapd := startExim(t, ca), startDovecot(t, ca)
	smtpRelay := startRelay(t, SMTP, net.JoinHostPort("127.0.0.1", itoa(mta.implicit)), ImplicitTLS, ca.pool, breaker.Config{FailureThreshold: 100})
	imapRelay := startRelay(t, IMAP, net.JoinHostPort("127.0.0.1", itoa(imapd.starttls)), StartTLS, ca.pool, breaker.Config{FailureThreshold: 100})

	dir := t.TempDir() // npm ci writes node_modules: never into the source tree
	for _, f := range []string{"package.json", "package-lock.json", "clients.mjs"} {
		b, err := os.ReadFile(filepath.Join("testdata", "node", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", "--cache", filepath.Join(dir, ".npm"))
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	run := exec.CommandContext(ctx, node, "clients.mjs")
	run.Dir = dir
	_, smtpPort, _ := net.SplitHostPort(smtpRelay.addr)
	_, imapPort, _ := net.SplitHostPort(imapRelay.addr)
	run.Env = append(os.Environ(), "SMTP_PORT="+smtpPort, "IMAP_PORT="+imapPort, "ATTACHMENT_BYTES=1048576")
	out, err := run.Output()
	if err != nil {
		t.Fatalf("node clients.mjs: %v\n%s\nsmtp relay:\n%s\nimap relay:\n%s", err, out, smtpRelay.log.String(), imapRelay.log.String())
	}
	var res struct {
		Accepted     []string
		Rejected     int
		RoundTrip    bool
		FetchedBytes int
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	if len(res.Accepted) != 1 || res.Accepted[0] != "b@example.com" || res.Rejected != 550 || !res.RoundTrip {
		t.Fatalf("node clients: %+v, want b@example.com accepted, nobody@ rejected with 550, the message fetched as appended", res)
	}
	if !containsAny(mta.spooled(t), "Content-Disposition: attachment; filename=blob.bin") {
		t.Fatal("exim's copy lacks the attachment")
	}
	smtpRelay.settle()
	imapRelay.settle()
	if got := smtpRelay.counts(); got != (counts{successes: 2}) {
		t.Fatalf("smtp outcomes %+v, want 2 successes (sent; recipient rejected)", got)
	}
	if got := imapRelay.counts(); got != (counts{successes: 1}) {
		t.Fatalf("imap outcomes %+v, want 1 success", got)
	}

	smtpRelay.b.ForceOpen()
	imapRelay.b.ForceOpen()
	run = exec.CommandContext(ctx, node, "clients.mjs", "open")
	run.Dir, run.Env = dir, append(os.Environ(), "SMTP_PORT="+smtpPort, "IMAP_PORT="+imapPort)
	if out, err = run.Output(); err != nil {
		t.Fatalf("node clients.mjs open: %v\n%s", err, out)
	}
	var open struct {
		SMTPCode     int
		SMTPResponse string
		IMAPError    string
		IMAPReason   string
	}
	if err := json.Unmarshal(out, &open); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	t.Logf("while open, node clients saw %+v", open)
	if open.SMTPCode != 421 || !strings.Contains(open.SMTPResponse, "4.3.0 mail-test circuit open") || !strings.Contains(open.IMAPReason, "mail-test circuit open") {
		t.Fatalf("while open, node clients saw %+v, want nodemailer's 421 4.3.0 and imapflow's BYE reason", open)
	}
	if s := smtpRelay.b.Snapshot(); s.Rejected != 1 {
		t.Fatalf("smtp relay rejected %d sessions, want 1", s.Rejected)
	}
}
