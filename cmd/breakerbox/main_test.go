package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("services:\n  - {name: a, upstream: 'http://127.0.0.1:1'}\n  - {name: g, per_region: {r1: 'http://127.0.0.1:2', r2: 'http://127.0.0.1:3'}}\n"), 0o644)
	os.WriteFile(bad, []byte("services:\n  - {name: a, upstream: 'http://127.0.0.1:1', open_timeout: 60}\n"), 0o644)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-config", good}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ok: 2 services, 3 circuits") {
		t.Fatalf("output %q", out.String())
	}
	err := run(context.Background(), []string{"check-config", bad}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:2: services[0].open_timeout") || exitCode(err) != 1 {
		t.Fatalf("err %v", err)
	}
}

func TestCommandLineErrors(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"check-config"}, {"serve", "--nope"}, {"serve", "extra"}, {"status", "--admin"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "usage:") {
			t.Errorf("%v: %v (exit %d), want a usage error", args, err, exitCode(err))
		}
	}
}

func TestServeDrainsInFlightRequestsOnShutdown(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		fmt.Fprint(w, "finished")
	}))
	defer up.Close()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf("services: [{name: slow, upstream: %q}]", up.URL)))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	al, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServers(ctx, srv, pl, al, nil, "", 10*time.Second, slog.New(slog.DiscardHandler)) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + pl.Addr().String() + "/slow/x")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-arrived
	cancel() // shutdown begins with the request in flight
	select {
	case err := <-done:
		t.Fatalf("serve returned %v before the request finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if b := <-got; b != "finished" {
		t.Fatalf("in-flight request got %q", b)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := http.Get("http://" + pl.Addr().String() + "/slow/x"); err == nil {
		t.Fatal("proxy still accepting after shutdown")
	}
}

// buildBinary builds breakerbox into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "breakerbox")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBinarySIGHUPReloadAndSIGTERM runs the real binary: a valid new config
// is swapped in on SIGHUP, an invalid one is rejected and the old one kept,
// and SIGTERM exits 0.
func TestBinarySIGHUPReloadAndSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	listen, admin := freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "breakerbox.yaml")
	write := func(body string) {
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("listen: %s\nadmin: %s\n%s", listen, admin, body)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("services: [{name: one, upstream: 'http://127.0.0.1:9'}]\n")
	stderr := new(syncbuf.Buffer)
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	circuits := func() string {
		resp, err := http.Get("http://" + admin + "/api/circuits")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var cs []proxy.Circuit
		json.NewDecoder(resp.Body).Decode(&cs)
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		return strings.Join(names, ",")
	}
	waitFor(t, func() bool { return circuits() == "one" })

	write("services: [{name: one, upstream: 'http://127.0.0.1:9'}, {name: two, upstream: 'http://127.0.0.1:9'}]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return circuits() == "one,two" })

	write("services: [{name: one, upstream: 'not a url'}]\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(stderr.String(), "config rejected, keeping the old one") })
	if got := circuits(); got != "one,two" {
		t.Fatalf("after an invalid reload: %s", got)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i > 10000 {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond) // waiting for real I/O to happen, not asserting timing
	}
}

func TestStatusPrintsCircuitsTable(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	defer up.Close()
	cfg, _ := config.Parse("t.yaml", []byte(fmt.Sprintf("services: [{name: svc, upstream: %q, failure_threshold: 2}, {name: ok, upstream: %q}]", up.URL, up.URL)))
	srv, _ := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	p, admin := httptest.NewServer(srv), httptest.NewServer(srv.Admin())
	defer p.Close()
	defer admin.Close()
	for range 2 {
		resp, err := http.Get(p.URL + "/svc/x")
		if err == nil {
			resp.Body.Close()
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"status", "--admin", strings.TrimPrefix(admin.URL, "http://")}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CIRCUIT") || // problems first
		!strings.HasPrefix(lines[1], "svc ") || !strings.Contains(lines[1], " open ") || !strings.Contains(lines[1], "closed→open (failure_threshold)") ||
		!strings.HasPrefix(lines[2], "ok ") || !strings.Contains(lines[2], "closed") || !strings.Contains(lines[2], " 0/5 failed ") {
		t.Fatalf("status output:\n%s", out.String())
	}
	err := run(context.Background(), []string{"status", "--admin", freeAddr(t)}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is breakerbox running?") {
		t.Fatalf("status against nothing: %v", err)
	}
}

func TestDemoOpensProbesAndClosesByItself(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a few seconds of real traffic")
	}
	var out, logs syncbuf.Buffer
	err := run(context.Background(), []string{"demo", "--duration", "6s", "--outage", "2s",
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"}, &out, &logs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"open the dashboard at http://127.0.0.1:", "demo over:", "registrar"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, want := range []string{"Circuit breaker OPEN for registrar after", "Circuit breaker CLOSED for registrar — recovered",
		"Circuit breaker OPEN for region eu-west-1 after"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}
