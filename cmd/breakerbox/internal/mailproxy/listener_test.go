package mailproxy

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/breaker/breakertest"
)

func TestListenerValidationNamesTheFieldAndTheFix(t *testing.T) {
	b, _ := breaker.New(breaker.Config{Name: "m"})
	valid := func() *Listener {
		return &Listener{Name: "m", Protocol: SMTP, Upstream: "smtp.gmail.com:465", Breaker: b}
	}
	for _, c := range []struct {
		name string
		edit func(*Listener)
		want string // "" means valid
	}{
		{"valid, TLS mode by port 465", func(*Listener) {}, ""},
		{"valid, TLS mode by port 587", func(l *Listener) { l.Upstream = "smtp.office365.com:587" }, ""},
		{"valid, plaintext when asked", func(l *Listener) { l.Upstream, l.TLSMode = "127.0.0.1:2525", Plaintext }, ""},
		{"no name", func(l *Listener) { l.Name = "" }, "Name: empty"},
		{"bad protocol", func(l *Listener) { l.Protocol = "pop3" }, `Protocol: "pop3" is not a mail protocol; use "smtp" or "imap"`},
		{"no breaker", func(l *Listener) { l.Breaker = nil }, "Breaker: nil"},
		{"no port", func(l *Listener) { l.Upstream = "smtp.gmail.com" }, "Upstream: \"smtp.gmail.com\" is not host:port"},
		{"bad port", func(l *Listener) { l.Upstream = "smtp.gmail.com:99999" }, "Upstream: port \"99999\""},
		{"port says nothing", func(l *Listener) { l.Upstream = "smtp.example.com:2525" }, `TLSMode: empty, and port 2525 says nothing; set "implicit" or "starttls"`},
		{"bad TLS mode", func(l *Listener) { l.TLSMode = "tls" }, `TLSMode: "tls" is not a TLS mode`},
		{"negative timeout", func(l *Listener) { l.ReplyTimeout = -time.Second }, "negative"},
	} {
		l := valid()
		c.edit(l)
		err := l.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	var l Listener
	if err := l.Serve(nil); err == nil {
		t.Error("Serve on a zero Listener: nil error")
	}
}

func TestLiteralMarkers(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"* 1 FETCH (BODY[] {342}\r\n", 342, true},
		{"a APPEND INBOX {12+}\r\n", 12, true},
		{"a APPEND INBOX {12-}\r\n", 12, true},
		{"* 1 FETCH (BINARY[] ~{5}\r\n", 5, true},
		{"{0}\r\n", 0, true},
		{"a LOGIN {4}\n", 4, true},
		{"* OK {not}\r\n", 0, false},
		{"* OK {}\r\n", 0, false},
		{"* OK 12}\r\n", 0, false},
		{"* OK done\r\n", 0, false},
		{"* OK {1234567890123456789}\r\n", 0, false},
	} {
		n, ok := literal(tailOf([]byte(c.line)))
		if n != c.n || ok != c.ok {
			t.Errorf("literal(%q) = %d, %v; want %d, %v", c.line, n, ok, c.n, c.ok)
		}
	}
}

// A long line's tail survives chunking: the literal marker at the end of a
// line longer than the buffer is still found.
func TestLiteralAtTheEndOfALineLongerThanTheBuffer(t *testing.T) {
	fake := newFakeServer(t, IMAP, nil, func(f *fakeServer) {
		f.replies = map[string]string{"FETCH": "* 1 FETCH (X-LONG \"" + strings.Repeat("y", 2*bufSize+5) + "\" BODY[] {23}\r\na9 NO [UNAVAILABLE] x\r\n)\r\n{tag} OK done\r\n"}
	})
	r := startRelay(t, IMAP, fake.addr(), Plaintext, nil, breaker.Config{})
	c := imapTransaction(t, r.addr)
	_ = c.c.Close()
	r.settle()
	if got := r.counts(); got != (counts{successes: 1}) {
		t.Fatalf("outcome %+v, want a success: the literal was read as a response\n%s", got, r.log.String())
	}
}

// A client that starts TLS with the provider through the relay gets an
// opaque tunnel: the relay stops reading and classifies nothing it cannot
// read.
func TestClientSTARTTLSBecomesAnOpaqueTunnel(t *testing.T) {
	fake := newFakeServer(t, SMTP, nil, func(f *fakeServer) { f.replies = map[string]string{"STARTTLS": "220 2.0.0 Ready to start TLS\r\n"} })
	r := startRelay(t, SMTP, fake.addr(), Plaintext, nil, breaker.Config{})
	c := dial(t, r.addr)
	c.smtpReply()
	c.send("STARTTLS\r\n")
	if got := c.smtpReply(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("STARTTLS: %q", got)
	}
	c.send("\x16\x03\x01 binary, no line end")
	c.send("more binary\n550 would be a reply\r\n")
	_ = c.c.Close()
	r.settle()
	if got := r.counts(); got != (counts{successes: 1}) {
		t.Fatalf("outcome %+v, want a success", got)
	}
}

func TestCloseEndsSessionsAndShutdownWaits(t *testing.T) {
	fake := newFakeServer(t, IMAP, nil)
	r := startRelay(t, IMAP, fake.addr(), Plaintext, nil, breaker.Config{})
	c := dial(t, r.addr)
	c.imapUntil("*")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.l.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a session open: %v, want the context's deadline", err)
	}
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("the session survived Shutdown's deadline")
	}
	if _, err := net.Dial("tcp", r.addr); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
	if err := r.l.Serve(mustListen(t)); !errors.Is(err, ErrListenerClosed) {
		t.Fatalf("Serve after Shutdown: %v, want ErrListenerClosed", err)
	}
	// The session was ended by the relay after a good greeting: no outage.
	if got := r.counts(); got.failures != 0 {
		t.Fatalf("outcome %+v, want no failure", got)
	}
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// leaseWaiter is a fleet that never answers a probe lease: AcquireProbe
// waits until its caller's context ends, as redisstate does when Redis is
// unreachable for longer than the caller will wait.
type leaseWaiter struct {
	waiting chan struct{} // one value per call that started waiting
	gaveUp  chan error    // ctx.Err() of each call that stopped waiting
}

func (w *leaseWaiter) Attach(*breaker.FleetLink) {}

func (w *leaseWaiter) AcquireProbe(ctx context.Context, _ *breaker.FleetLink, _ uint64) (bool, time.Duration) {
	w.waiting <- struct{}{}
	<-ctx.Done()
	w.gaveUp <- ctx.Err()
	return false, time.Second
}

// Close ends a session still waiting for the fleet's probe lease: the wait
// ends with the Listener, and counts nothing against the provider.
func TestCloseEndsASessionWaitingForAFleetProbeLease(t *testing.T) {
	clock := breakertest.NewClock()
	fleet := &leaseWaiter{waiting: make(chan struct{}, 1), gaveUp: make(chan error, 1)}
	b, err := breaker.New(breaker.Config{Name: "m", FailureThreshold: 1, OpenTimeout: time.Minute, Clock: clock, Sync: fleet})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	tk.Report(breaker.Failure)
	clock.Advance(time.Minute) // HALF_OPEN: the next session is a probe and asks the fleet
	l := &Listener{Name: "m", Protocol: SMTP, Upstream: "127.0.0.1:1", TLSMode: Plaintext, Breaker: b}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- l.Serve(ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-fleet.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the session never asked the fleet for a probe lease")
	}
	before := b.Snapshot()
	closed := make(chan error, 1)
	go func() { closed <- l.Close() }() // returns only once every session has ended
	select {
	case got := <-fleet.gaveUp:
		if !errors.Is(got, context.Canceled) {
			t.Errorf("the lease wait ended with %v, want context.Canceled", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the session's wait for a probe lease")
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrListenerClosed) {
		t.Errorf("Serve: %v, want ErrListenerClosed", err)
	}
	after := b.Snapshot()
	if after.State != breaker.HalfOpen || after.Failures != before.Failures || after.Rejected != before.Rejected {
		t.Errorf("after Close: %v, %d failures, %d rejected; want HALF_OPEN, %d, %d (nothing counted)",
			after.State, after.Failures, after.Rejected, before.Failures, before.Rejected)
	}
}
