package main

import (
	"log"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"
)

// The ceiling modes measure what an HTTP engine costs before any proxy code:
// a server that only writes breakerbox's prebuilt open answer (-mode reject,
// on -engine net/http or fasthttp), and a minimal fasthttp proxy
// (-mode fastproxy) in front of -upstream, the closed-circuit counterpart of
// -mode proxy.

// openBody is breakerbox's open answer for the "down" circuit of
// proxy-load.sh (open for 1h), byte for byte.
const openBody = "{\n  \"circuit\": \"down\",\n  \"error\": \"circuit open\",\n  \"retry_after_seconds\": 3600,\n  \"state\": \"open\"\n}\n"

func serveReject(listen, engine string) {
	switch engine {
	case "net/http":
		body := []byte(openBody)
		ct, ra, circuit, state := []string{"application/json"}, []string{"3600"}, []string{"down"}, []string{"open"}
		log.Fatal(http.ListenAndServe(listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h["Content-Type"], h["Retry-After"], h["Breakerbox-Circuit"], h["Breakerbox-State"] = ct, ra, circuit, state
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write(body)
		})))
	case "fasthttp":
		body := []byte(openBody)
		log.Fatal(fasthttp.ListenAndServe(listen, func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetContentType("application/json")
			ctx.Response.Header.Set("Retry-After", "3600")
			ctx.Response.Header.Set("Breakerbox-Circuit", "down")
			ctx.Response.Header.Set("Breakerbox-State", "open")
			ctx.SetBody(body)
		}))
	default:
		log.Fatalf("unknown -engine %q: want net/http or fasthttp", engine)
	}
}

// serveFastProxy forwards /up/<rest> to upstream's /<rest> with one pooled
// fasthttp.HostClient: no routing, breaker, metrics or header rules, the
// floor a fasthttp engine could reach.
func serveFastProxy(listen, upstream string) {
	addr := strings.TrimPrefix(upstream, "http://")
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 1024}
	prefix := []byte("/up")
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		req := &ctx.Request
		path := req.URI().PathOriginal()
		if len(path) >= len(prefix) && string(path[:len(prefix)]) == string(prefix) {
			req.SetRequestURIBytes(path[len(prefix):])
		}
		req.Header.Add("X-Forwarded-For", ctx.RemoteIP().String())
		if err := hc.Do(req, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}}
	log.Fatal(srv.ListenAndServe(listen))
}
