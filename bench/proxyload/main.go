// Command proxyload is the load benchmark's helper: a tiny upstream, or a
// plain httputil.ReverseProxy in front of one (the reference breakerbox is
// measured against). See ../proxy-load.sh.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
)

type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte  { return buffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) { buffers.Put((*[32 << 10]byte)(b)) }

func main() {
	mode := flag.String("mode", "upstream", "upstream | proxy")
	listen := flag.String("listen", "127.0.0.1:18081", "address to serve on")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "proxy mode: where to forward")
	pool := flag.Bool("pool", false, "proxy mode: recycle copy buffers (as breakerbox does)")
	flag.Parse()
	var h http.Handler
	switch *mode {
	case "upstream":
		body := []byte(`{"ok":true,"id":"0123456789abcdef"}`)
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
	case "proxy":
		u, err := url.Parse(*upstream)
		if err != nil {
			log.Fatal(err)
		}
		prefix := "/up"
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 256
		rp := &httputil.ReverseProxy{Transport: t, Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Path = pr.In.URL.Path[len(prefix):]
			pr.SetURL(u)
			pr.SetXForwarded()
		}}
		if *pool {
			rp.BufferPool = bufferPool{}
		}
		h = rp
	default:
		log.Fatalf("unknown -mode %q: want upstream or proxy", *mode)
	}
	log.Fatal(http.ListenAndServe(*listen, h))
}
