package proxy

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// FuzzPathMapping feeds request-targets through the proxy's path mapping
// (resolve, then rewrite's SetURL join) and checks what the upstream would
// receive: always the configured host, never above the configured base path
// (even for an upstream that decodes %2F and "\" into separators and then
// removes dot segments), encoded slashes kept, and the decoded path equal to
// the base plus the client's decoded rest. The seed corpus (plain, encoded,
// dot-segment, backslash and double-slash targets) is in
// testdata/fuzz/FuzzPathMapping, run by every go test; CI fuzzes for a few
// seconds. Each target is also mapped as the fasthttp engine maps it, with
// the same checks and the same route and rest required:
//
//	go test -run '^$' -fuzz FuzzPathMapping -fuzztime 10s ./proxy/
func FuzzPathMapping(f *testing.F) {
	cfg, err := config.Parse("fuzz.yaml", []byte(`services:
  - {name: svc, upstream: 'http://up.example:8080/base/v1'}
  - {name: g, per_region: {eu: 'http://eu.example/b2'}}
`))
	if err != nil {
		f.Fatal(err)
	}
	tbl, err := newTable(cfg, newMetrics(), func(time.Duration) http.RoundTripper { return nil })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		in, err := url.ParseRequestURI(target) // as net/http parses the request line
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		rt, p, rawPath, _, err := tbl.resolve(in)
		if err != nil || rt == nil {
			return
		}
		req := &http.Request{Method: "GET", URL: in, Header: http.Header{}, Host: "proxy"}
		pr := &httputil.ProxyRequest{In: req, Out: req.Clone(req.Context())}
		pr.Out.URL.Path, pr.Out.URL.RawPath = p, rawPath
		pr.SetURL(rt.target)
		out := pr.Out.URL
		if out.Scheme != rt.target.Scheme || out.Host != rt.target.Host || pr.Out.Host != "" || out.User != nil {
			t.Fatalf("%q → %s: not the configured upstream %s", target, out, rt.target)
		}
		checkMapped(t, target, in, rt, p, out.RequestURI())

		// The fasthttp engine's mapping of the same path (fastURL, then
		// forwardFast's appendJoined): the same route and rest, and a
		// request-target that passes the same checks. Not for a target with
		// a query or fragment, which fasthttp splits off before.
		if strings.ContainsAny(target, "?#") {
			return
		}
		fu, err := fastURL([]byte(target))
		if err != nil {
			t.Fatalf("%q: net/http parses it, fastURL does not: %v", target, err)
		}
		frt, fp, frawPath, _, err := tbl.resolve(&fu)
		if err != nil || frt != rt || fp != p { // the raw paths may differ in form: the request-targets are checked
			t.Fatalf("%q: fasthttp resolves it to rest %q (%v), net/http to %q, or another route", target, fp, err, p)
		}
		rest := frawPath
		if rest == "" {
			rest = fp
		}
		checkMapped(t, target, in, frt, fp, string(appendJoined(nil, frt.basePath(), rest)))
	})
}

// checkMapped checks the request-target sent upstream for target (parsed
// as in) on route rt with rest p: never above the base path (even for an
// upstream that decodes %2F and "\" into separators and then removes dot
// segments), encoded slashes kept, and the decoded path the base plus p.
func checkMapped(t *testing.T, target string, in *url.URL, rt *route, p, requestURI string) {
	t.Helper()
	sent, err := url.ParseRequestURI(requestURI)
	if err != nil {
		t.Fatalf("%q → request-target %q does not parse: %v", target, requestURI, err)
	}
	base := rt.target.Path
	for _, decoded := range []string{sent.Path, strings.ReplaceAll(sent.Path, `\`, "/")} {
		clean := path.Clean(decoded)
		if clean != base && !strings.HasPrefix(clean, base+"/") {
			t.Fatalf("%q → %q cleans to %q, above the base path %q", target, requestURI, clean, base)
		}
	}
	if want := base + p; sent.Path != want && !(p == "" && sent.Path == base+"/") {
		t.Fatalf("%q → upstream path %q, want %q", target, sent.Path, want)
	}
	if got, want := strings.Count(strings.ToUpper(sent.EscapedPath()), "%2F"), strings.Count(strings.ToUpper(in.EscapedPath()), "%2F"); got != want {
		t.Fatalf("%q → %q: %d encoded slashes, want %d", target, sent.EscapedPath(), got, want)
	}
}
