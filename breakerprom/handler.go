package breakerprom

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// WriteText writes the Collector's metrics in the Prometheus text format
// (version 0.0.4), the same series Collect gives, straight from the
// breakers' snapshots. Gathered through a prometheus.Registry, every series
// becomes a client_model message that is checked, sorted and then encoded:
// with 10,000 breakers that cost about a second of CPU per scrape; written
// here it costs a small fraction of that.
func (c *Collector) WriteText(w io.Writer) error {
	circuits := c.snapshots()
	tw := &textSink{w: bufio.NewWriterSize(w, 64<<10)}
	for _, f := range families {
		tw.headed = false // a family without samples has no header, as in a Gather
		for i := range circuits {
			f.samples(tw, f, &circuits[i])
		}
	}
	return tw.w.Flush()
}

// textSink writes samples as text lines through a reused buffer.
type textSink struct {
	w      *bufio.Writer
	buf    []byte
	headed bool // the current family's HELP and TYPE are written
}

func (t *textSink) header(f *family) {
	t.headed = true
	typ := "gauge"
	if f.typ == prometheus.CounterValue {
		typ = "counter"
	}
	fmt.Fprintf(t.w, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, typ)
}

func (t *textSink) emit(f *family, c *circuit, v float64, l1, l2 string) {
	if !t.headed {
		t.header(f)
	}
	b := append(t.buf[:0], f.name...)
	b = append(b, `{circuit="`...)
	b = appendLabelValue(b, c.s.Name)
	values := [2]string{l1, l2}
	for i, l := range values[:len(f.labels)] {
		b = append(b, `",`...)
		b = append(b, f.labels[i]...)
		b = append(b, `="`...)
		b = appendLabelValue(b, l)
	}
	b = append(b, `"} `...)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	b = append(b, '\n')
	t.buf = b
	t.w.Write(b)
}

// appendLabelValue escapes a label value as the text format wants:
// backslash, double quote and line feed.
func appendLabelValue(b []byte, s string) []byte {
	if !strings.ContainsAny(s, "\\\"\n") {
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, s[i])
		}
	}
	return b
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// TextWriter writes metrics in the Prometheus text format (version 0.0.4).
// A Collector is one.
type TextWriter interface {
	WriteText(w io.Writer) error
}

// Handler serves /metrics in the Prometheus text format: what g gathers
// (encoded by client_golang), then what each of writers writes (a
// Collector, or any other source of many series written directly). Do not
// also register a Collector with g: its families would appear twice. The
// answer is not compressed: for a scrape over loopback or a local network,
// compressing megabytes costs more CPU than it saves.
//
// Errors from g are answered 500 before anything is written, as promhttp
// does by default; errors writing the answer (the scraper went away) are
// dropped.
func Handler(g prometheus.Gatherer, writers ...TextWriter) http.Handler {
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mfs, err := g.Gather()
		if err != nil {
			http.Error(w, "breakerprom: gathering metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", string(format))
		bw := bufio.NewWriterSize(w, 32<<10)
		enc := expfmt.NewEncoder(bw, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				return
			}
		}
		if bw.Flush() != nil {
			return
		}
		for _, tw := range writers {
			if tw.WriteText(w) != nil {
				return
			}
		}
	})
}
