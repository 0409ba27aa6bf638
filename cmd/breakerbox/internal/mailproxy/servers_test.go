//go:build unix

package mailproxy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/internal/brokertest"
)

// need finds a server binary, or skips the test (fails it under CI=true).
func need(t testing.TB, name, pkg string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if brokertest.InCI() {
		t.Fatalf("%s not found, and CI is set: install it (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not found; install it to run this test (apt-get install %s)", name, pkg)
	return ""
}

// runServer starts a server in the foreground in a process group of its
// own, killed (-9) when the test ends, and waits until ports accept.
func runServer(t testing.TB, out *bytes.Buffer, name string, args []string, ports ...int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	for _, port := range ports {
		addr := "127.0.0.1:" + strconv.Itoa(port)
		for i := 0; ; i++ {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case <-done:
				mu.Lock()
				t.Fatalf("%s exited before listening on %s:\n%s", name, addr, out.String())
			case <-time.After(50 * time.Millisecond):
			}
			if i == 600 {
				mu.Lock()
				t.Fatalf("%s is not listening on %s after 30 s:\n%s", name, addr, out.String())
			}
		}
	}
	return cmd
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// exim is a real MTA (Debian's exim4) on two free loopback ports: SMTPS
// (implicit TLS) and submission with STARTTLS. It accepts mail for anyone
// but nobody@ (550 5.1.1), AUTH PLAIN for user/secret, and keeps what it
// receives in its spool (queue_only): nothing is delivered anywhere.
type exim struct {
	implicit, starttls int
	spool              string
	cmd                *exec.Cmd
}

func startExim(t testing.TB, ca *testCA) *exim {
	t.Helper()
	bin := need(t, "exim4", "exim4-daemon-light", "/usr/sbin/exim4")
	dir := t.TempDir()
	e := &exim{implicit: brokertest.FreePort(t), starttls: brokertest.FreePort(t), spool: filepath.Join(dir, "spool")}
	conf := fmt.Sprintf(`primary_hostname = mx.test
spool_directory = %[1]s/spool
log_file_path = %[1]s/%%slog
pid_file_path = %[1]s/exim.pid
exim_user = root
exim_group = root
daemon_smtp_ports = %[2]d : %[3]d
tls_on_connect_ports = %[2]d
local_interfaces = 127.0.0.1
tls_certificate = %[4]s
tls_privatekey = %[5]s
tls_advertise_hosts = *
auth_advertise_hosts = *
host_lookup =
rfc1413_hosts =
queue_only = true
message_size_limit = 64M
acl_smtp_rcpt = acl_rcpt
begin acl
acl_rcpt:
  deny local_parts = nobody
       message = 5.1.1 no such user
  accept
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{user}}{eq{$auth3}{secret}}}}
  server_set_id = $auth2
`, dir, e.implicit, e.starttls, ca.certFile, ca.keyFile)
	path := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	e.cmd = runServer(t, &out, bin, []string{"-C", path, "-bd", "-bdf"}, e.implicit, e.starttls)
	return e
}

// spooled returns the data (-D) files of the messages exim has accepted.
func (e *exim) spooled(t testing.TB) [][]byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.spool, "input", "*-D"))
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// dovecot is a real IMAP server (Debian's dovecot-imapd) on two free
// loopback ports: IMAPS (implicit TLS) and IMAP with STARTTLS. Any user
// logs in with the password "secret"; mail lives under the test's
// temporary directory.
type dovecot struct {
	implicit, starttls int
	cmd                *exec.Cmd
}

func startDovecot(t testing.TB, ca *testCA) *dovecot {
	t.Helper()
	bin := need(t, "dovecot", "dovecot-imapd", "/usr/sbin/dovecot")
	mailUser, err := user.Lookup("dovecot")
	if err != nil {
		t.Fatalf("dovecot-imapd is installed but its user is missing: %v", err)
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)
	// Dovecot's unprivileged processes (dovenull, dovecot) must reach its
	// base directory, and the mail user its home: t.TempDir is 0700.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	d := &dovecot{implicit: brokertest.FreePort(t), starttls: brokertest.FreePort(t)}
	dh := ""
	if _, err := os.Stat("/usr/share/dovecot/dh.pem"); err == nil {
		dh = "ssl_dh = </usr/share/dovecot/dh.pem"
	}
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = /dev/stderr
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <%[4]s
ssl_key = <%[5]s
%[6]s
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
passdb {
  driver = static
  args = password=secret
}
userdb {
  driver = static
  args = uid=%[7]d gid=%[8]d home=%[1]s/home/%%u
}
mail_location = maildir:~/Maildir
service imap-login {
  chroot =
  inet_listener imap {
    port = %[3]d
  }
  inet_listener imaps {
    port = %[2]d
    ssl = yes
  }
}
service anvil {
  chroot =
}
`, dir, d.implicit, d.starttls, ca.certFile, ca.keyFile, dh, uid, gid)
	path := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	d.cmd = runServer(t, &out, bin, []string{"-F", "-c", path}, d.implicit, d.starttls)
	return d
}
