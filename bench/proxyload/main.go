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
//	-mode rate       GETs -target at a fixed -rate for -duration over -conns
//	                 connections (open loop: each latency counts from when the
//	                 request was due, so a stall is not hidden by sending less)
//	                 and prints "p50_ms p99_ms requests errors"
//	-mode startup    starts the command in the arguments (its output to
//	                 -log), GETs -target every millisecond until it answers 200
//	                 and prints "ms pid": the time from exec to that answer,
//	                 without a shell's or curl's start-up in it; the command
//	                 keeps running
//	-mode reject     answers every request with breakerbox's prebuilt open
//	                 answer on -engine net/http or fasthttp (the ceiling of a
//	                 rejection on that engine; see ceiling.go)
//	-mode fastproxy  a minimal fasthttp proxy in front of -upstream
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
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
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
	rate := flag.Int("rate", 2000, "rate: requests per second")
	duration := flag.Duration("duration", 10*time.Second, "rate: how long")
	conns := flag.Int("conns", 32, "rate: connections")
	engine := flag.String("engine", "net/http", "reject: net/http or fasthttp")
	logPath := flag.String("log", os.DevNull, "startup: where the command's stderr goes")
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
	case "reject":
		serveReject(*listen, *engine)
	case "fastproxy":
		serveFastProxy(*listen, *upstream)
	case "config":
		fmt.Printf("listen: %s\nadmin: %s\nservices:\n", *proxyAddr, *adminAddr)
		for i := range *services {
			fmt.Printf("  - {name: svc%05d, upstream: %q}\n", i, *upstream)
		}
	case "rate":
		p50, p99, sent, errs := fixedRate(*target, *rate, *duration, *conns)
		fmt.Printf("%.2f %.2f %d %d\n", p50, p99, sent, errs)
	case "startup":
		logf, err := os.Create(*logPath)
		if err != nil {
			log.Fatal(err)
		}
		cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
		cmd.Stderr = logf
		client := &http.Client{Timeout: time.Second}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			log.Fatal(err)
		}
		for {
			if resp, err := client.Get(*target); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Since(start) > time.Minute {
				log.Fatalf("%s did not answer %s within a minute (see %s)", flag.Arg(0), *target, *logPath)
			}
			time.Sleep(time.Millisecond)
		}
		fmt.Println(time.Since(start).Milliseconds(), cmd.Process.Pid)
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

// fixedRate sends rate GETs per second to url for d over conns connections
// and returns the latency percentiles in ms, measured from when each request
// was due.
func fixedRate(url string, rate int, d time.Duration, conns int) (p50, p99 float64, sent, errs int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	n := max(int(d.Seconds()*float64(rate)), 1)
	due := make(chan time.Time, n)
	lat := make([]float64, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for at := range due {
				resp, err := client.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				ms := float64(time.Since(at)) / 1e6
				mu.Lock()
				if err != nil || resp.StatusCode != 200 {
					errs++
				}
				lat = append(lat, ms)
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		time.Sleep(time.Until(at))
		due <- at
	}
	close(due)
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return pct(0.50), pct(0.99), len(lat), errs
}
