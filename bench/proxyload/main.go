// Command proxyload is the load benchmark's helper (see ../proxy-load.sh):
//
//	-mode upstream   a tiny upstream answering 200 bytes of JSON
//	-mode proxy      a plain httputil.ReverseProxy in front of -upstream, the
//	                 reference breakerbox is measured against (-pool: with a
//	                 BufferPool, as breakerbox has; -tuned: with breakerbox's
//	                 transport settings)
//	-mode config     writes a breakerbox config with -services services to
//	                 stdout (the many-circuits measurement)
//	-mode touch      sends one GET to each of -services services through
//	                 the proxy at -target, so that every per-route series exists
//	-mode ports      prints -n free loopback ports, one a line
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
)

type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte  { return buffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) { buffers.Put((*[32 << 10]byte)(b)) }

func main() {
	mode := flag.String("mode", "upstream", "upstream | proxy | config | touch")
	listen := flag.String("listen", "127.0.0.1:18081", "upstream, proxy: address to serve on")
	upstream := flag.String("upstream", "http://127.0.0.1:18081", "proxy, config: where to forward")
	pool := flag.Bool("pool", false, "proxy: recycle copy buffers (as breakerbox does)")
	tuned := flag.Bool("tuned", false, "proxy: breakerbox's transport settings (no transparent gzip, no cap on idle connections)")
	services := flag.Int("services", 10000, "config, touch: how many services")
	target := flag.String("target", "http://127.0.0.1:7070", "touch: the proxy")
	proxyAddr := flag.String("proxy", "127.0.0.1:7070", "config: the proxy's listen address")
	adminAddr := flag.String("admin", "127.0.0.1:7071", "config: the admin listen address")
	n := flag.Int("n", 1, "ports: how many")
	flag.Parse()
	switch *mode {
	case "upstream":
		body := []byte(`{"ok":true,"id":"0123456789abcdef","items":[` + strings.Repeat(`{"n":1},`, 19) + `{"n":1}]}`)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		})
		log.Fatal(http.ListenAndServe(*listen, h))
	case "proxy":
		u, err := url.Parse(*upstream)
		if err != nil {
			log.Fatal(err)
		}
		prefix := "/up"
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 256
		if *tuned {
			t.MaxIdleConns = 0
			t.DisableCompression = true
		}
		rp := &httputil.ReverseProxy{Transport: t, Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Path = pr.In.URL.Path[len(prefix):]
			pr.SetURL(u)
			pr.SetXForwarded()
		}}
		if *pool {
			rp.BufferPool = bufferPool{}
		}
		log.Fatal(http.ListenAndServe(*listen, rp))
	case "config":
		fmt.Printf("listen: %s\nadmin: %s\nservices:\n", *proxyAddr, *adminAddr)
		for i := range *services {
			fmt.Printf("  - {name: svc%05d, upstream: %q}\n", i, *upstream)
		}
	case "touch":
		var wg sync.WaitGroup
		next := make(chan int)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					resp, err := client.Get(fmt.Sprintf("%s/svc%05d/x", *target, i))
					if err != nil {
						log.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		for i := range *services {
			next <- i
		}
		close(next)
		wg.Wait()
	case "ports":
		// Held open until all are chosen, so the n ports differ.
		for range *n {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				log.Fatal(err)
			}
			defer l.Close()
			fmt.Println(l.Addr().(*net.TCPAddr).Port)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown -mode %q: want upstream, proxy, config, touch or ports\n", *mode)
		os.Exit(2)
	}
}
