package proxy

import (
	"strconv"
	"strings"
)

// evidenceText is a circuit's last outcomes for a log line, oldest first,
// e.g. "503/12ms 503/9.8ms timeout/5000ms".
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
