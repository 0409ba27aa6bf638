package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkScanHead is the cost scanHead adds to every
// request on the fasthttp engine, for a head of ten fields.
func BenchmarkScanHead(b *testing.B) {
	var ctx fasthttp.RequestCtx
	head := "POST /svc/x HTTP/1.1\r\nHost: sidecar:7070\r\nUser-Agent: client/1.0\r\nAccept: application/json\r\n" +
		"Accept-Encoding: gzip\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\nContent-Type: application/json\r\n" +
		"Content-Length: 0\r\nX-Request-Id: 0123456789abcdef\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n" +
		"Cookie: session=abc\r\n\r\n"
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(head))); err != nil {
		b.Fatal(err)
	}
	if len(ctx.Request.Header.RawHeaders()) == 0 {
		b.Fatal("no raw header: the benchmark would measure nothing")
	}
	for b.Loop() {
		if _, refused := scanHead(&ctx); refused {
			b.Fatal("refused a plain head")
		}
	}
}
