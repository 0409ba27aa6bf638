package mailbreaker

import (
	"strings"

	"github.com/breakerbox/breakerbox/breaker"
)

// ClassifyIMAP classifies an IMAP status response, tagged or untagged, with
// or without its tag: "a1 NO [AUTHENTICATIONFAILED] Invalid credentials",
// "* BYE shutting down", "NO [UNAVAILABLE] try later". A BYE that answers
// the client's own LOGOUT, or ends a session left idle (an autologout, the
// end of an IDLE), is normal: do not classify it.
func ClassifyIMAP(line string) breaker.Outcome {
	status, code, text := parseIMAPStatus(line)
	return classifyIMAP(status, code, text)
}

// ClassifyIMAPGreeting classifies the server's greeting: "* OK" and
// "* PREAUTH" are successes, anything else ("* BYE", "* NO [UNAVAILABLE]")
// means the server refuses service: Failure.
func ClassifyIMAPGreeting(line string) breaker.Outcome {
	status, _, _ := parseIMAPStatus(line)
	if status == "OK" || status == "PREAUTH" {
		return breaker.Success
	}
	return breaker.Failure
}

func classifyIMAP(status, code, text string) breaker.Outcome {
	switch status {
	case "OK", "PREAUTH":
		return breaker.Success
	case "BYE":
		return breaker.Failure
	case "NO", "BAD":
		switch code {
		case "UNAVAILABLE", "SERVERBUG":
			return breaker.Failure
		case "THROTTLED":
			return breaker.Ignored
		}
		if containsFold(text, "throttled") {
			return breaker.Ignored
		}
		return breaker.Success
	}
	return breaker.Failure // not IMAP: something in between is broken
}

// parseIMAPStatus splits "[tag] STATUS [[CODE args]] text" into the status
// word (upper case), the response code's atom (upper case, without its
// arguments) and the text.
func parseIMAPStatus(line string) (status, code, text string) {
	line = strings.TrimRight(line, "\r\n")
	word, rest := cut(line)
	if !isIMAPStatus(word) {
		word, rest = cut(rest)
	}
	status = strings.ToUpper(word)
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			end = len(rest) - 1
		}
		code, _ = cut(rest[1 : end+1])
		code = strings.ToUpper(strings.TrimSuffix(code, "]"))
		rest = strings.TrimLeft(rest[end+1:], " ")
	}
	return status, code, rest
}

func isIMAPStatus(word string) bool {
	switch strings.ToUpper(word) {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return true
	}
	return false
}

func cut(s string) (word, rest string) {
	word, rest, _ = strings.Cut(s, " ")
	return word, strings.TrimLeft(rest, " ")
}

// containsFold reports whether s contains the lower-case ASCII word sub,
// ignoring case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}
