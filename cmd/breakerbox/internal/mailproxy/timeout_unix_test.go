//go:build linux

package mailproxy

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
)

// A provider whose accept queue is full drops our SYN: the connect times
// out, and that is an outage. (Linux: a listen backlog of 0 that nobody
// accepts from fills after a connection or two.)
func TestConnectTimeoutIsAnOutage(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	full := false
	for range 16 { // fill the queue until a connect no longer completes
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			full = true
			break
		}
		defer c.Close()
	}
	if !full {
		t.Skip("the kernel completes every connect to a full queue (SYN cookies?); nothing to time out")
	}
	r := startRelay(t, SMTP, addr, Plaintext, nil, breaker.Config{FailureThreshold: 100}, func(l *Listener) { l.DialTimeout = 300 * time.Millisecond })
	c := dial(t, r.addr)
	if got := c.smtpReply(); !strings.HasPrefix(got, "421 4.4.2 mail-test provider unreachable") {
		t.Fatalf("client got %q, want the relay's 421", got)
	}
	_ = c.c.Close()
	r.settle()
	if got := r.counts(); got != (counts{failures: 1}) || !strings.Contains(r.log.String(), "timeout") {
		t.Fatalf("outcome %+v, want a failure for the timeout\n%s", got, r.log.String())
	}
}
