package proxy

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestHeadDoneAgreesWithByteByByte checks headDone, which searches reads of
// four bytes or more at once, against headDoneBytes on heads cut into
// reads at every place, and on random bytes from a small alphabet where
// partial matches are common.
func TestHeadDoneAgreesWithByteByByte(t *testing.T) {
	heads := []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nA: b\r\n\r\n",
		"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\r\n\r\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\r\r\n\n\r\n\r\n",
		"HTTP/1.1 200 OK\nA: b\n\n", // bare LFs: not a head's end here
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, 1+r.IntN(24))
		for i := range b {
			b[i] = "\r\nx"[r.IntN(3)]
		}
		heads = append(heads, string(b))
	}
	for _, h := range heads {
		// Every split into up to three reads.
		for i := 0; i <= len(h); i++ {
			for j := i; j <= len(h); j++ {
				reads := []string{h[:i], h[i:j], h[j:]}
				if got, want := feed(reads, (*headConn).headDone), feed(reads, (*headConn).headDoneBytes); got != want {
					t.Fatalf("reads %q: headDone ends the head after read %d, byte by byte after read %d", reads, got, want)
				}
			}
		}
	}
}

// feed gives reads to a fresh headConn's done and returns the index of the
// read that completed the head, or -1.
func feed(reads []string, done func(*headConn, []byte) bool) int {
	c := &headConn{inHead: true}
	for i, r := range reads {
		if len(r) > 0 && done(c, []byte(r)) {
			return i
		}
	}
	return -1
}

// TestFieldOf checks the bit of every field the proxy acts on, in any
// case, and that names of the same lengths are not taken for them.
func TestFieldOf(t *testing.T) {
	want := map[string]headFields{"Forwarded": fieldForwarded, "Breakerbox-State": fieldBreakerbox, "breakerbox-x": fieldBreakerbox}
	for _, f := range fastHopHeaders {
		want[f.name] = f.bit
	}
	for name, bit := range want {
		for _, n := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if got := fieldOf([]byte(n)); got != bit {
				t.Errorf("fieldOf(%q) = %b, want %b", n, got, bit)
			}
		}
		// Same length, one byte off: not the field.
		other := []byte(name)
		other[len(other)-1] ^= 0x01
		if got := fieldOf(other); got != 0 && bit != fieldBreakerbox {
			t.Errorf("fieldOf(%q) = %b, want 0", other, got)
		}
	}
	for _, n := range []string{"", "T", "Host", "Breakerbox-", "Content-Length", "X-Forwarded-For", "Keep-Alivf", "Connectiom"} {
		if got := fieldOf([]byte(n)); got != 0 {
			t.Errorf("fieldOf(%q) = %b, want 0", n, got)
		}
	}
}
