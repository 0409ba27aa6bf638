package config

import (
	"fmt"
	"strings"
	"testing"
)

// manyServices is a config of n services as bench/proxy-load.sh writes it.
func manyServices(n int) []byte {
	var y strings.Builder
	y.WriteString("listen: 127.0.0.1:7070\nadmin: 127.0.0.1:7071\nservices:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - {name: svc%05d, upstream: \"http://127.0.0.1:8080\"}\n", i)
	}
	return []byte(y.String())
}

// BenchmarkParseMany is most of breakerbox's start-up with 10,000 circuits.
func BenchmarkParseMany(b *testing.B) {
	data := manyServices(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("many.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
