package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
)

const testToken = "admin-token-0123456789"

func newAdmin(t *testing.T, yaml string) (*httptest.Server, *syncbuf.Buffer) {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	logs := new(syncbuf.Buffer)
	srv, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(srv.Admin())
	t.Cleanup(admin.Close)
	return admin, logs
}

func do(t *testing.T, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestAdminSendsSecurityHeaders(t *testing.T) {
	admin, _ := newAdmin(t, "services: [{name: svc, upstream: 'http://127.0.0.1:9'}]")
	for _, path := range []string{"/", "/app.js", "/api/circuits", "/metrics", "/nope", "/api/circuits/nope"} {
		resp, _ := do(t, "GET", admin.URL+path, nil)
		h := resp.Header
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("%s: headers %v", path, h)
		}
	}
}

func TestAdminRefusesForeignHostHeaders(t *testing.T) {
	admin, _ := newAdmin(t, "admin: box.lan:7071\nadmin_hosts: [breakerbox.internal]\nservices: [{name: svc, upstream: 'http://127.0.0.1:9'}]")
	for _, tt := range []struct {
		host string
		want int
	}{
		{"evil.example", 421},
		{"evil.example:7071", 421},
		{"localhost.evil.example", 421},
		{"127.0.0.1.nip.io", 421},
		{"localhost:7071", 200},
		{"LOCALHOST", 200},
		{"127.0.0.1:7071", 200},
		{"[::1]:7071", 200},
		{"10.1.2.3", 200},
		{"box.lan:7071", 200},
		{"breakerbox.internal", 200},
		{"Breakerbox.Internal.:7071", 200},
	} {
		for _, path := range []string{"/api/circuits", "/metrics"} {
			resp, body := do(t, "GET", admin.URL+path, map[string]string{"Host": tt.host})
			if resp.StatusCode != tt.want {
				t.Errorf("Host %s %s: %d, want %d", tt.host, path, resp.StatusCode, tt.want)
			}
			if tt.want == 421 && (!strings.Contains(body, "admin_hosts") || strings.Contains(body, "breakerbox_")) {
				t.Errorf("Host %s: body %s", tt.host, body)
			}
		}
	}
}

func TestAdminBearerSchemeIsCaseInsensitive(t *testing.T) {
	admin, _ := newAdmin(t, "admin_token: "+testToken+"\nservices: [{name: svc, upstream: 'http://127.0.0.1:9'}]")
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		resp, body := do(t, "POST", admin.URL+"/api/circuits/svc/reset", map[string]string{"Authorization": scheme + " " + testToken})
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", scheme, resp.StatusCode, body)
		}
	}
}

// TestAdminFailedTokensAreLoggedAndSlowed: each failure from one address
// waits longer than the one before (100, 200, 400 ms: a lower bound, which a
// loaded machine only makes longer), the log says so once per period, and
// the right token still gets in at once afterwards.
func TestAdminFailedTokensAreLoggedAndSlowed(t *testing.T) {
	admin, logs := newAdmin(t, "admin_token: "+testToken+"\nservices: [{name: svc, upstream: 'http://127.0.0.1:9'}]")
	start := time.Now()
	for _, auth := range []string{"Bearer wrong", "", "Basic " + testToken} {
		resp, _ := do(t, "POST", admin.URL+"/api/circuits/svc/open", map[string]string{"Authorization": auth})
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%q: %d", auth, resp.StatusCode)
		}
	}
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Errorf("3 failures answered in %v: want at least 100+200+400 ms of backoff", d)
	}
	if n := strings.Count(logs.String(), "failed token attempt"); n != 1 || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("%d log lines, want 1 (rate-limited):\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the log holds the token")
	}
	resp, _ := do(t, "POST", admin.URL+"/api/circuits/svc/open", map[string]string{"Authorization": "Bearer " + testToken})
	if resp.StatusCode != 200 {
		t.Fatalf("right token after failures: %d: the operator is locked out", resp.StatusCode)
	}
}

func TestAdminEventStreamsAreCapped(t *testing.T) {
	admin, _ := newAdmin(t, "limits: {admin: {max_event_streams: 2}}\nservices: [{name: svc, upstream: 'http://127.0.0.1:9'}]")
	open := func() (*http.Response, error) {
		resp, err := http.Get(admin.URL + "/api/events")
		if err != nil || resp.StatusCode != 200 {
			return resp, err
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if line != "retry: 1000\n" {
			return resp, fmt.Errorf("first line %q, %v", line, err)
		}
		return resp, nil
	}
	var streams []*http.Response
	for range 2 {
		resp, err := open()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream under the cap: %v", err)
		}
		streams = append(streams, resp)
	}
	resp, err := http.Get(admin.URL + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "limits.admin.max_event_streams") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("stream over the cap: %d %s", resp.StatusCode, body)
	}
	streams[0].Body.Close() // frees a slot once the server sees the hang-up
	for i := 0; ; i++ {
		resp, err := open()
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if resp != nil {
			resp.Body.Close()
		}
		if i > 2000 {
			t.Fatal("a closed stream never freed its slot")
		}
		time.Sleep(5 * time.Millisecond) // waiting for the server to see the close
	}
	streams[1].Body.Close()
}
