package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// TestDashboardShowsCircuitOpenWithoutReload opens the dashboard in real
// headless Chromium, drives a circuit open through the proxy, and checks that
// the open page shows it open and the transition in its timeline, without a
// reload. It saves screenshots in $BREAKERBOX_SCREENSHOTS (or a temporary directory).
func TestDashboardShowsCircuitOpenWithoutReload(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; CI must install it (apt-get install -y chromium)", chromiumPath)
		}
		t.Skipf("%s is missing: install it with `apt-get update && apt-get install -y chromium` to run the dashboard test", chromiumPath)
	}

	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	t.Cleanup(healthy.Close)

	const token = "dashboard-test-token"
	cfg, err := config.Parse("dashboard.yaml", []byte(fmt.Sprintf(`
admin_token: %[3]s
defaults:
  failure_threshold: 5
  open_timeout: 60s
  half_open_successes: 2
  timeout: 5s
services:
  - name: payments
    upstream: %[1]s
    failure_threshold: 3
    open_timeout: 30s
  - name: cloudflare
    upstream: %[2]s
  - name: namecheap
    upstream: %[2]s
  - name: genesys
    failure_threshold: 10
    half_open_successes: 3
    per_region:
      us-east-1: %[2]s
      eu-west-1: %[1]s
`, failing.URL, healthy.URL, token)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(srv)
	t.Cleanup(front.Close)
	admin := httptest.NewServer(srv.Admin())
	t.Cleanup(admin.Close)

	ctx, jsErrors := newBrowser(t)

	// Load the page and wait until it shows the circuit closed and the event
	// stream is connected, so the transition below reaches it live.
	err = run(ctx, 15*time.Second,
		chromedp.Navigate(admin.URL),
		chromedp.WaitVisible(`#cards [data-circuit="payments"][data-state="closed"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#conn[data-connection="live"]`, chromedp.ByQuery),
		// A reload would lose this mark.
		chromedp.Evaluate(`window.sameDocument = true`, nil),
	)
	if err != nil {
		t.Fatalf("dashboard did not show payments closed and live: %v", err)
	}

	// Traffic for a realistic picture: successes, failures under the
	// threshold, then payments' 3 consecutive failures open its circuit.
	send := func(path string, want int) {
		t.Helper()
		resp, err := http.Get(front.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	for range 7 {
		send("/cloudflare/zones", http.StatusOK)
		send("/genesys/us-east-1/api/v2/users", http.StatusOK)
	}
	for range 4 {
		send("/genesys/eu-west-1/api/v2/users", http.StatusServiceUnavailable)
	}
	for range 3 {
		send("/payments/charge", http.StatusServiceUnavailable)
	}
	opened := time.Now()
	send("/payments/charge", http.StatusServiceUnavailable) // rejected by the open circuit

	err = run(ctx, 5*time.Second,
		chromedp.WaitVisible(`#cards [data-circuit="payments"][data-state="open"]`, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("payments not shown open within 5 s without a reload: %v", err)
	}
	t.Logf("page showed payments open %v after the opening request", time.Since(opened).Round(time.Millisecond))
	var sameDocument bool
	var countdown, totalOpen, message string
	err = run(ctx, 5*time.Second,
		chromedp.WaitVisible(`#timeline [data-transition][data-circuit="payments"][data-from="closed"][data-to="open"]`, chromedp.ByQuery),
		chromedp.Evaluate(`window.sameDocument === true`, &sameDocument),
		chromedp.Text(`#timeline [data-circuit="payments"][data-to="open"] .tl-msg`, &message, chromedp.ByQuery),
		chromedp.Text(`[data-circuit="payments"] .status-text`, &countdown, chromedp.ByQuery),
		chromedp.Text(`#totals [data-total="open"] b`, &totalOpen, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("timeline does not show payments' transition to open: %v", err)
	}
	if !sameDocument {
		t.Error("the page was reloaded; it must update in place")
	}
	if !strings.Contains(message, "3 consecutive failures") {
		t.Errorf("timeline message = %q, want the reason with 3 consecutive failures", message)
	}
	if !strings.HasPrefix(countdown, "Next probe in 0:") {
		t.Errorf("payments status = %q, want a countdown to the next probe", countdown)
	}
	if totalOpen != "1" {
		t.Errorf("header open total = %q, want 1", totalOpen)
	}

	// Manual control from the page: a wrong token shows the API's error,
	// the right one forces the circuit open (dark red).
	var apiError string
	err = run(ctx, 5*time.Second,
		// The card's buttons show on hover; click through the DOM.
		chromedp.Evaluate(`document.querySelector('[data-circuit="namecheap"] [data-action="open"]').click()`, nil),
		chromedp.WaitVisible(`#control #token`, chromedp.ByQuery),
		chromedp.SetValue(`#token`, "wrong-token", chromedp.ByQuery),
		chromedp.Click(`#control-go`, chromedp.ByQuery),
		chromedp.WaitVisible(`#control-error`, chromedp.ByQuery),
		chromedp.Text(`#control-error`, &apiError, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("force open with a wrong token: %v", err)
	}
	if !strings.Contains(apiError, "401") || !strings.Contains(apiError, "wrong token") {
		t.Errorf("error shown for a wrong token = %q, want the API's 401 error", apiError)
	}
	err = run(ctx, 5*time.Second,
		chromedp.SetValue(`#token`, token, chromedp.ByQuery),
		chromedp.Click(`#control-go`, chromedp.ByQuery),
		chromedp.WaitVisible(`#cards [data-circuit="namecheap"][data-state="forced_open"]`, chromedp.ByQuery),
		chromedp.WaitNotVisible(`#control`, chromedp.ByQuery),
	)
	if err != nil {
		t.Fatalf("namecheap not shown forced open after force open with the token: %v", err)
	}
	nc, err := srv.Registry().Get("namecheap")
	if err != nil {
		t.Fatal(err)
	}
	if st := nc.State().String(); st != "forced_open" {
		t.Errorf("namecheap breaker state = %s, want forced_open", st)
	}

	// Screenshots go to $BREAKERBOX_SCREENSHOTS when set (to keep them, e.g.
	// for docs/), else to the test's temporary directory: never into the tree.
	out := os.Getenv("BREAKERBOX_SCREENSHOTS")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"light", "dark"} {
		var png []byte
		err := run(ctx, 10*time.Second,
			emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{
				{Name: "prefers-color-scheme", Value: scheme},
				// No highlight animations half-way through in the picture.
				{Name: "prefers-reduced-motion", Value: "reduce"},
			}),
			chromedp.FullScreenshot(&png, 100), // quality 100 means PNG
		)
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		name := "dashboard.png"
		if scheme == "dark" {
			name = "dashboard-dark.png"
		}
		if err := os.WriteFile(filepath.Join(out, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	if errs := jsErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// newBrowser starts headless Chromium at 1280×800 and returns its context and
// a function that reports the page's uncaught exceptions and console errors
// so far. The browser stops when the test ends.
func newBrowser(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	// Not t.TempDir: Chromium's helper processes can still write to the
	// profile for a moment after the browser exits, which fails its cleanup.
	profile, err := os.MkdirTemp("", "breakerbox-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.WindowSize(1280, 800),
		chromedp.WSURLReadTimeout(15 * time.Second),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(func(format string, args ...any) {
		// chromedp v0.14 does not know the DOM events newer Chromium
		// sends for <dialog>; those are noise, anything else is not.
		if !strings.HasPrefix(format, "unhandled node event") {
			log.Printf(format, args...)
		}
	}))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for Chromium to exit
		for deadline := time.Now().Add(3 * time.Second); ; {
			err := os.RemoveAll(profile)
			if err == nil || time.Now().After(deadline) {
				if err != nil {
					t.Logf("leaving the Chromium profile %s: %v", profile, err)
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	var mu sync.Mutex
	var errs []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			errs = append(errs, "exception: "+ev.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				errs = append(errs, "console.error: "+strings.Join(args, " "))
			}
		}
	})
	// Start the browser on the tab's own context: a Run under a timeout
	// context would stop the browser when the timeout's context ends.
	// WSURLReadTimeout bounds the start.
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), errs...)
	}
}

// run runs actions in the browser with a time limit.
func run(ctx context.Context, limit time.Duration, actions ...chromedp.Action) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := chromedp.Run(ctx, actions...)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("not within %v: %w", limit, err)
	}
	return err
}
