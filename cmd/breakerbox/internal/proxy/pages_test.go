package proxy_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// pagedServer has circuits a…f (their upstream refuses connections, so
// every request fails, under a threshold never reached): c has 5 requests,
// a 3, b 1; d is forced open and e disabled; f is idle.
func pagedServer(t *testing.T) http.Handler {
	t.Helper()
	var y strings.Builder
	y.WriteString("defaults: {failure_threshold: 100}\nservices:\n")
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		fmt.Fprintf(&y, "  - {name: %s, upstream: 'http://127.0.0.1:1'}\n", n)
	}
	cfg, err := config.Parse("paged.yaml", []byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"c": 5, "a": 3, "b": 1} {
		for range n {
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, httptest.NewRequest("GET", "/"+name+"/x", nil))
			if w.Code != http.StatusBadGateway {
				t.Fatalf("GET /%s/x: %d, want 502 (refused)", name, w.Code)
			}
		}
	}
	srv.Registry().MustGet("d").ForceOpen()
	srv.Registry().MustGet("e").ForceClosed()
	return srv.Admin()
}

func getPage(t *testing.T, admin http.Handler, query string) (proxy.Page, *httptest.ResponseRecorder) {
	t.Helper()
	w := httptest.NewRecorder()
	admin.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1/api/circuits?view=page&"+query, nil))
	var p proxy.Page
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
			t.Fatalf("%s: %v\n%s", query, err, w.Body)
		}
	}
	return p, w
}

func TestPagedCircuitsSortFilterAndFocus(t *testing.T) {
	admin := pagedServer(t)
	tests := []struct {
		query  string
		names  string // the page, in order
		offset int
		match  int
		focus  string
	}{
		// Worst first: forced open, disabled, then the closed ones by
		// failure streak and error share (all fail: c 5, a 3, b 1), idle f.
		{"", "d,e,c,a,b,f", 0, 6, ""},
		{"sort=health", "d,e,c,a,b,f", 0, 6, ""},
		{"sort=name", "a,b,c,d,e,f", 0, 6, ""},
		{"sort=volume", "c,a,b,d,e,f", 0, 6, ""},
		{"sort=errors", "c,a,b,d,e,f", 0, 6, ""},
		{"sort=latency&state=forced_open", "d", 0, 1, ""},
		{"sort=name&state=closed", "a,b,c,f", 0, 4, ""},
		{"sort=name&state=forced_open,disabled", "d,e", 0, 2, ""},
		{"sort=name&state=open&state=disabled", "e", 0, 1, ""},
		{"q=C", "c", 0, 1, ""},
		{"q=zzz", "", 0, 0, ""},
		{"sort=name&offset=2&limit=2", "c,d", 2, 6, ""},
		// An offset past the end shows the last page.
		{"sort=name&offset=50&limit=4", "e,f", 4, 6, ""},
		{"sort=name&limit=4&focus=e", "e,f", 4, 6, "e"},
		{"sort=name&limit=4&focus=nosuch", "a,b,c,d", 0, 6, ""},
		{"sort=name&limit=2&problem_after=", "c,d", 2, 6, "d"},
		{"sort=name&limit=2&problem_after=d", "e,f", 4, 6, "e"},
		{"sort=name&limit=2&problem_after=e", "c,d", 2, 6, "d"}, // round to the first
		{"sort=name&state=closed&problem_after=", "a,b,c,f", 0, 4, ""},
	}
	for _, tt := range tests {
		p, w := getPage(t, admin, tt.query)
		if w.Code != http.StatusOK {
			t.Errorf("%s: %d %s", tt.query, w.Code, w.Body)
			continue
		}
		if got := strings.Join(p.Names, ","); got != tt.names || p.Offset != tt.offset || p.Matched != tt.match || p.Focus != tt.focus {
			t.Errorf("%s: names %s offset %d matched %d focus %q, want %s %d %d %q", tt.query, got, p.Offset, p.Matched, p.Focus, tt.names, tt.offset, tt.match, tt.focus)
		}
		var rows []string
		for _, c := range p.Circuits {
			rows = append(rows, c.Name)
		}
		if !slices.Equal(rows, p.Names) {
			t.Errorf("%s: circuits %v, want the page's %v in full", tt.query, rows, p.Names)
		}
		if p.Total != 6 || p.Counts["closed"] != 4 || p.Counts["forced_open"] != 1 || p.Counts["disabled"] != 1 || p.Counts["open"] != 0 {
			t.Errorf("%s: total %d counts %v, want 6 with 4 closed, 1 forced_open, 1 disabled", tt.query, p.Total, p.Counts)
		}
	}

	// The page's rows carry their rolling stats: c forwarded 5 calls.
	p, _ := getPage(t, admin, "q=c")
	if len(p.Circuits) != 1 || p.Circuits[0].Stats == nil || p.Circuits[0].Stats.ErrorPercent != 100 || p.Circuits[0].ConsecutiveFailures != 5 {
		t.Errorf("q=c: %+v, want c with 5 failures and 100%% errors", p.Circuits)
	}
}

func TestPagedCircuitsSinceSendsOnlyChangedRows(t *testing.T) {
	admin := pagedServer(t)
	_, w := getPage(t, admin, "sort=name")
	at, err := strconv.ParseFloat(w.Header().Get("Breakerbox-Time"), 64)
	if err != nil {
		t.Fatalf("Breakerbox-Time %q: %v", w.Header().Get("Breakerbox-Time"), err)
	}
	// Later than every transition and with no traffic due to slide out of
	// the window: only the circuits with recent traffic (a, b, c) or a
	// transition after since could have changed.
	future := strconv.FormatFloat(at+float64(time.Hour/time.Second), 'f', 3, 64)
	p, w := getPage(t, admin, "sort=name&since="+future)
	if w.Code != http.StatusOK {
		t.Fatalf("since: %d %s", w.Code, w.Body)
	}
	if got := strings.Join(p.Names, ","); got != "a,b,c,d,e,f" {
		t.Errorf("since: names %s, want the whole page", got)
	}
	if len(p.Circuits) != 0 {
		var rows []string
		for _, c := range p.Circuits {
			rows = append(rows, c.Name)
		}
		t.Errorf("since an hour ahead: rows %v, want none", rows)
	}
	p, _ = getPage(t, admin, "sort=name&since="+strconv.FormatFloat(at-1, 'f', 3, 64))
	var rows []string
	for _, c := range p.Circuits {
		rows = append(rows, c.Name)
	}
	if got := strings.Join(rows, ","); got != "a,b,c,d,e" { // f: no traffic, no transition
		t.Errorf("since a second before: rows %s, want a,b,c,d,e", got)
	}
}

func TestPagedCircuitsRejectBadParameters(t *testing.T) {
	admin := pagedServer(t)
	for _, tt := range []struct{ query, want string }{
		{"sort=size", `sort="size": want health, volume, errors, latency or name`},
		{"state=broken", `state="broken": want closed, half_open, open, forced_open or disabled`},
		{"state=open,", `state="": want closed`},
		{"limit=0", `limit="0": want a whole number from 1 to 500`},
		{"limit=501", `limit="501"`},
		{"offset=-1", `offset="-1": want a whole number, 0 or more`},
		{"offset=x", `offset="x"`},
		{"since=yesterday", `since="yesterday": want unix seconds`},
	} {
		_, w := getPage(t, admin, tt.query)
		var body struct{ Error string }
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusBadRequest || !strings.Contains(body.Error, tt.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tt.query, w.Code, strings.TrimSpace(w.Body.String()), tt.want)
		}
	}
	for query, want := range map[string]string{
		"view=pages":              "want full, summary or page",
		"sort=name":               "sort=: only with view=page",
		"view=summary&state=open": "state=: only with view=page",
	} {
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1/api/circuits?"+query, nil))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), want) {
			t.Errorf("%s: %d %s, want 400 with %q", query, w.Code, w.Body, want)
		}
	}
}
