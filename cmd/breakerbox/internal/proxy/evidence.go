package proxy

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
)

// evidenceHandler adds to a circuit's transition-to-open log record the
// circuit's last outcomes, as "evidence": what the breaker saw before it
// opened, e.g. "503/12ms 503/9.8ms timeout/5000ms", oldest first.
type evidenceHandler struct {
	slog.Handler
	stats *circuitStats
}

func (h evidenceHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && opens(r) {
		r = r.Clone()
		r.AddAttrs(slog.String("evidence", evidenceText(h.stats.evidence())))
	}
	return h.Handler.Handle(ctx, r)
}

func (h evidenceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return evidenceHandler{h.Handler.WithAttrs(as), h.stats}
}

func (h evidenceHandler) WithGroup(name string) slog.Handler {
	return evidenceHandler{h.Handler.WithGroup(name), h.stats}
}

// opens reports whether r is a breaker's transition to open.
func opens(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "to" && a.Value.Kind() == slog.KindString && a.Value.String() == "open" {
			found = true
			return false
		}
		return true
	})
	return found
}

func evidenceText(outcomes []Outcome) string {
	if len(outcomes) == 0 {
		return "none on this replica"
	}
	var b strings.Builder
	for i, o := range outcomes {
		if i > 0 {
			b.WriteByte(' ')
		}
		if o.Error != "" {
			b.WriteString(o.Error)
		} else {
			b.WriteString(strconv.Itoa(o.Status))
		}
		b.WriteByte('/')
		b.WriteString(strconv.FormatFloat(o.LatencyMs, 'f', -1, 64))
		b.WriteString("ms")
	}
	return b.String()
}
