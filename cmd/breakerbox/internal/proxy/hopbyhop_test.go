package proxy

import (
	"net/http"
	"slices"
	"testing"
)

// TestHopConnScan: Connection lines are found in any case, cut anywhere
// by the reads, and only with "close" do they note names.
func TestHopConnScan(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\nX-A: 1\r\ncOnNeCtIoN: close, x-secret ,Keep-Alive, X-Other\r\nConnection: keep-alive, X-Kept\r\nContent-Length: 2\r\n\r\nok"
	for cut := range len(head) + 1 {
		for second := cut; second <= len(head); second += 7 {
			c := &hopConn{}
			c.scan([]byte(head[:cut]))
			c.scan([]byte(head[cut:second]))
			c.scan([]byte(head[second:]))
			if want := []string{"X-Secret", "X-Other"}; !slices.Equal(c.names, want) {
				t.Fatalf("reads cut at %d and %d: %q, want %q", cut, second, c.names, want)
			}
		}
	}
	c := &hopConn{}
	c.scan([]byte("HTTP/1.1 200 OK\r\nX-Connection: close, X-A\r\nConnection:close\r\n\r\n"))
	h := http.Header{"X-A": {"1"}}
	c.strip(h)
	if len(c.names) != 0 || h.Get("X-A") != "1" {
		t.Fatalf("%q %v", c.names, h)
	}
}
