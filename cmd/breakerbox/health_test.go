package main

import (
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
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

// probe GETs an admin path as the kubelet does: by the pod's IP address in
// the Host header, without a token.
func probe(t *testing.T, admin, path string) (int, proxy.Readiness) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+admin+path, nil)
	req.Host = "10.1.2.3:7071"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r proxy.Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.StatusCode, r
}

// TestReadyOnlyWhileTheListenersServe: the admin handler alone is not
// ready; served with the proxy listener by runServers it is; once shut down
// it is not again. /healthz answers alive throughout.
func TestReadyOnlyWhileTheListenersServe(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte("admin_token: 0123456789abcdef0123\nservices: [{name: a, upstream: 'http://127.0.0.1:9'}]"))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	alone := httptest.NewServer(srv.Admin())
	defer alone.Close()
	addr := strings.TrimPrefix(alone.URL, "http://")
	if code, r := probe(t, addr, "/readyz"); code != http.StatusServiceUnavailable || r.Status != "not ready" {
		t.Fatalf("before the listeners are up: %d %+v, want 503 not ready", code, r)
	}
	if code, r := probe(t, addr, "/healthz"); code != http.StatusOK || r.Status != "alive" {
		t.Fatalf("/healthz: %d %+v", code, r)
	}

	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	al, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServers(ctx, srv, pl, al, nil, "", 5*time.Second, slog.New(slog.DiscardHandler)) }()
	waitFor(t, func() bool { return srv.Readiness().Status == "ready" })
	code, r := probe(t, al.Addr().String(), "/readyz") // the token guards manual control only
	if code != http.StatusOK || r.Status != "ready" || r.Circuits != 1 || r.State != "memory" || r.Fleet != nil {
		t.Fatalf("serving: %d %+v", code, r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := srv.Readiness(); r.Status != "not ready" {
		t.Fatalf("after shutdown: %+v", r)
	}
}

// TestARejectedReloadStaysReady: the old config keeps serving, so the
// sidecar stays ready, and /readyz shows why the reload was rejected until
// a good one clears it.
func TestARejectedReloadStaysReady(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	write := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("services: [{name: a, upstream: 'http://127.0.0.1:9'}]\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	srv.Health().SetReady(true)
	admin := httptest.NewServer(srv.Admin())
	defer admin.Close()
	addr := strings.TrimPrefix(admin.URL, "http://")

	write("services: [{name: a, upstream: 'not a url'}]\n")
	if reload(srv, path, slog.New(slog.DiscardHandler)) != nil {
		t.Fatal("a bad config was accepted")
	}
	code, r := probe(t, addr, "/readyz")
	if code != http.StatusOK || r.Status != "ready" || !strings.Contains(r.LastReloadError, "services[0].upstream") {
		t.Fatalf("after a rejected reload: %d %+v", code, r)
	}
	write("services: [{name: a, upstream: 'http://127.0.0.1:9'}, {name: b, upstream: 'http://127.0.0.1:9'}]\n")
	if reload(srv, path, slog.New(slog.DiscardHandler)) == nil {
		t.Fatal("a good config was rejected")
	}
	if code, r := probe(t, addr, "/readyz"); code != http.StatusOK || r.LastReloadError != "" || r.Circuits != 2 {
		t.Fatalf("after a good reload: %d %+v", code, r)
	}
}

// TestADegradedFleetStaysReady runs serve against a real Redis and kills
// it: /readyz still answers 200, with the fleet degraded in its body, and
// the proxy keeps forwarding.
func TestADegradedFleetStaysReady(t *testing.T) {
	rs := redistest.Start(t)
	up := okUpstream(t)
	listen, admin := freeAddr(t), freeAddr(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("listen: %s\nadmin: %s\nstate: '%s'\nservices: [{name: a, upstream: %q}]\n",
		listen, admin, rs.URL(), up.URL)), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path}, io.Discard, new(syncbuf.Buffer)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var r proxy.Readiness
	var code int
	waitFor(t, func() bool {
		if _, _, err := fetch("http://" + admin + "/healthz"); err != nil {
			return false
		}
		code, r = probe(t, admin, "/readyz")
		return r.Status == "ready"
	})
	if code != http.StatusOK || r.Fleet == nil || r.Fleet.Degraded || r.Fleet.Replica == "" || r.State != rs.URL() {
		t.Fatalf("with Redis up: %d %+v %+v", code, r, r.Fleet)
	}

	rs.Kill()
	waitFor(t, func() bool { code, r = probe(t, admin, "/readyz"); return r.Status == "degraded" })
	if code != http.StatusOK || r.Fleet == nil || !r.Fleet.Degraded || !strings.Contains(r.Reason, "Redis is unreachable") {
		t.Fatalf("with Redis killed: %d %+v %+v, want 200 and degraded", code, r, r.Fleet)
	}
	if code, body := get(t, "http://"+listen+"/a/x"); code != http.StatusOK || body != "upstream ok" {
		t.Fatalf("proxy with Redis down: %d %q", code, body)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out strings.Builder
		if err := run(context.Background(), args, &out, io.Discard); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		// A test binary has no version stamped; its revision is Go's, if any.
		re := regexp.MustCompile(`^breakerbox \(devel\)\nrevision:  \S+( \(modified\))?\ngo:        ` + regexp.QuoteMeta(runtime.Version()) + "\n$")
		if !re.MatchString(out.String()) {
			t.Errorf("%v printed %q", args, out.String())
		}
	}
}

// TestVersionOfABuildStampedByTheBuildScript builds the binary as
// .ci/build.sh does (the Dockerfile's and CI's build) and reads its
// version, revision and Go version back, from the command and from the
// build-info metric of a running one.
func TestVersionOfABuildStampedByTheBuildScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "breakerbox")
	cmd := exec.Command("bash", "../../.ci/build.sh", bin)
	cmd.Env = append(os.Environ(), "VERSION=v9.8.7-test", "REVISION=0123abcd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf(".ci/build.sh: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	// " (modified)" says the checkout had uncommitted changes when Go stamped
	// the build, as a developer's often has: the test checks the script's
	// stamp, not the state of the checkout it runs in.
	want := regexp.MustCompile(fmt.Sprintf(`^breakerbox v9\.8\.7-test\nrevision:  0123abcd( \(modified\))?\ngo:        %s\n$`, regexp.QuoteMeta(runtime.Version())))
	if !want.Match(out) {
		t.Fatalf("version printed %q, want %s", out, want)
	}
	meta, _ := exec.Command("go", "version", "-m", bin).Output()
	if !strings.Contains(string(meta), "CGO_ENABLED=0") {
		t.Fatalf("not a static (CGO_ENABLED=0) build:\n%s", meta)
	}

	admin := freeAddr(t)
	srv := exec.Command(bin)
	srv.Env = append(os.Environ(), "BREAKERBOX_LISTEN="+freeAddr(t), "BREAKERBOX_ADMIN="+admin)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var body string
	waitFor(t, func() bool { _, body, err = fetch("http://" + admin + "/metrics"); return err == nil })
	line := fmt.Sprintf(`breakerbox_build_info{goversion=%q,revision="0123abcd",version="v9.8.7-test"} 1`, runtime.Version())
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `$`).MatchString(body) {
		t.Fatalf("/metrics lacks %s:\n%s", line, grepLines(body, "build_info"))
	}
}
