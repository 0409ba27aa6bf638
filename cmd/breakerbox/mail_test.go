package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// fakeSMTP is a provider that greets 421 (down) or 220 (up) and counts the
// connections it accepts.
type fakeSMTP struct {
	ln    net.Listener
	up    atomic.Bool
	conns atomic.Int64
	wg    sync.WaitGroup
}

func newFakeSMTP(t *testing.T) *fakeSMTP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSMTP{ln: ln}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			f.wg.Go(func() { f.session(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeSMTP) session(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if !f.up.Load() {
		fmt.Fprint(c, "421 4.3.2 fake service not available\r\n")
		return
	}
	fmt.Fprint(c, "220 fake ESMTP\r\n")
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
			fmt.Fprint(c, "221 2.0.0 bye\r\n")
			return
		}
		fmt.Fprint(c, "250 ok\r\n")
	}
}

// smtpSession connects to addr, says QUIT after the greeting, and returns
// everything the server sent.
func smtpSession(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("no greeting: %v", err)
	}
	if strings.HasPrefix(greeting, "220") {
		fmt.Fprint(c, "QUIT\r\n")
	}
	rest, _ := io.ReadAll(r) // until the server closes
	return greeting + string(rest)
}

func mailConfig(t *testing.T, upstream string) (cfg *config.Config, listen, admin string) {
	t.Helper()
	listen, admin = freeAddr(t), freeAddr(t)
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`listen: %s
admin: %s
admin_token: mail-test-token-0123456
services: [{name: web, upstream: 'http://127.0.0.1:9'}]
mail:
  - name: fake-smtp
    protocol: smtp
    listen: %s
    upstream: %s
    tls: plaintext
    failure_threshold: 3
    open_timeout: 10m
`, freeAddr(t), admin, listen, upstream)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg, listen, admin
}

func circuitOf(t *testing.T, admin, name string) proxy.Circuit {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/api/circuits")
	if err != nil {
		return proxy.Circuit{}
	}
	defer resp.Body.Close()
	var cs []proxy.Circuit
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no circuit %s in /api/circuits: %+v", name, cs)
	return proxy.Circuit{}
}

// TestServeMailCircuit runs serve with an SMTP mail circuit in front of a
// fake provider: failed sessions open it, an open circuit answers 421 4.3.0
// without connecting to the provider, and a manual reset closes it.
func TestServeMailCircuit(t *testing.T) {
	fake := newFakeSMTP(t)
	cfg, listen, admin := mailConfig(t, fake.ln.Addr().String())
	var out syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, "", 5*time.Second, slog.New(slog.NewTextHandler(&out, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	waitFor(t, func() bool { _, err := http.Get("http://" + admin + "/api/circuits"); return err == nil })
	if !strings.Contains(out.String(), `msg="mail listener" circuit=fake-smtp protocol=smtp listen=`+listen+" upstream="+fake.ln.Addr().String()) {
		t.Errorf("banner does not list the mail circuit:\n%s", out.String())
	}
	c := circuitOf(t, admin, "fake-smtp")
	if c.Kind != "smtp" || c.Upstream != "smtp://"+fake.ln.Addr().String() || c.State != "closed" || c.Settings.FailureThreshold != 3 {
		t.Fatalf("before: %+v", c)
	}
	if web := circuitOf(t, admin, "web"); web.Kind != "http" {
		t.Errorf("HTTP circuit kind %q", web.Kind)
	}

	for i := range 3 {
		if got := smtpSession(t, listen); !strings.HasPrefix(got, "421 4.3.2 fake") {
			t.Fatalf("session %d: client got %q, want the provider's 421", i, got)
		}
	}
	waitFor(t, func() bool { return circuitOf(t, admin, "fake-smtp").State == "open" })
	if c := circuitOf(t, admin, "fake-smtp"); c.Counts["failure"] != 3 {
		t.Errorf("after 3 failed sessions: %+v", c)
	}
	if n := fake.conns.Load(); n != 3 {
		t.Fatalf("provider saw %d connections, want 3", n)
	}
	if m := metricsText(t, admin); !strings.Contains(m, `breakerbox_circuit_state{circuit="fake-smtp",state="open"} 1`) {
		t.Errorf("/metrics does not carry the mail circuit:\n%s", m)
	}

	fake.up.Store(true) // recovered, but the circuit does not know yet
	got := smtpSession(t, listen)
	if !strings.HasPrefix(got, "421 4.3.0 fake-smtp circuit open, retry in ") {
		t.Fatalf("open circuit: client got %q", got)
	}
	if n := fake.conns.Load(); n != 3 {
		t.Fatalf("open circuit connected to the provider: %d connections, want 3", n)
	}
	if c := circuitOf(t, admin, "fake-smtp"); c.Rejected != 1 {
		t.Errorf("rejected %d, want 1", c.Rejected)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/api/circuits/fake-smtp/reset", nil)
	req.Header.Set("Authorization", "Bearer mail-test-token-0123456")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reset: %s", resp.Status)
	}
	if c := circuitOf(t, admin, "fake-smtp"); c.State != "closed" {
		t.Fatalf("after reset: %s", c.State)
	}
	if got := smtpSession(t, listen); !strings.HasPrefix(got, "220 fake ESMTP") || !strings.Contains(got, "221 2.0.0 bye") {
		t.Fatalf("after reset: client got %q", got)
	}
	if n := fake.conns.Load(); n != 4 {
		t.Fatalf("after reset: provider saw %d connections, want 4", n)
	}
	waitFor(t, func() bool { return circuitOf(t, admin, "fake-smtp").Counts["success"] == 1 })
}

// TestMailReloadRestartsChangedListeners: a reload that moves a mail
// circuit to another port and changes its threshold serves it on the new
// port with its breaker renewed in the registry, state kept; an unchanged
// circuit keeps its listener; a removed one stops.
func TestMailReloadRestartsChangedListeners(t *testing.T) {
	fake := newFakeSMTP(t)
	parse := func(tmpl string, args ...any) *config.Config {
		t.Helper()
		cfg, err := config.Parse("t.yaml", []byte("services: [{name: web, upstream: 'http://127.0.0.1:9'}]\nmail:\n"+fmt.Sprintf(tmpl, args...)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	const entry = "  - {name: %s, protocol: smtp, listen: '%s', upstream: '%s', tls: plaintext, failure_threshold: %d}\n"
	up := fake.ln.Addr().String()
	a1, b, c := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := parse(entry+entry+entry, "a", a1, up, 1, "b", b, up, 5, "c", c, up, 5)
	log := slog.New(slog.DiscardHandler)
	srv, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m, err := startMail(cfg, srv.Registry(), time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.shutdown(context.Background())
	smtpSession(t, a1) // 421 from the provider: a (threshold 1) opens
	waitFor(t, func() bool { return srv.Registry().MustGet("a").State() == breaker.Open })
	bListener := m.running["b"].l

	a2 := freeAddr(t)
	next := parse(entry+entry, "a", a2, up, 2, "b", b, up, 5)
	if err := srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	m.reload(next)
	if conn, err := net.Dial("tcp", a1); err == nil {
		conn.Close()
		t.Error("a's old port still accepts")
	}
	if conn, err := net.Dial("tcp", c); err == nil {
		conn.Close()
		t.Error("removed circuit c still accepts")
	}
	if m.running["b"].l != bListener {
		t.Error("unchanged circuit b got a new listener")
	}
	if got := smtpSession(t, a2); !strings.HasPrefix(got, "421 4.3.0 a circuit open") {
		t.Errorf("a on its new port: %q (its OPEN state should carry over)", got)
	}
	if a, _ := srv.Registry().Lookup("a"); m.running["a"].l.Breaker != a || a.Config().FailureThreshold != 2 {
		t.Error("a's listener does not use the renewed breaker")
	}
}

func metricsText(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
