package mailbreaker

import "github.com/breakerbox/breakerbox/breaker"

// ClassifySMTP classifies the final line of an SMTP reply to a command: code
// is the three-digit reply code and text what follows it, starting with the
// RFC 3463 enhanced status code when the server sends one ("4.7.0 Too many
// messages"). The greeting has its own rule: see ClassifySMTPGreeting.
func ClassifySMTP(code int, text string) breaker.Outcome {
	class, subject := enhancedCode(text)
	return classifySMTP(code, class, subject)
}

// ClassifySMTPGreeting classifies the server's greeting: 220 is a success,
// a 4xx with an RFC 3463 4.7.x code is throttling (Ignored), anything else
// (421, 554) means the server refuses service: Failure.
func ClassifySMTPGreeting(code int, text string) breaker.Outcome {
	class, subject := enhancedCode(text)
	return classifySMTPGreeting(code, class, subject)
}

func classifySMTPGreeting(code, class, subject int) breaker.Outcome {
	switch {
	case code == 220:
		return breaker.Success
	case code/100 == 4 && class == 4 && subject == 7:
		return breaker.Ignored
	}
	return breaker.Failure
}

// classifySMTP is the table's SMTP rows; class and subject are the first two
// numbers of the enhanced status code, 0 when there is none.
func classifySMTP(code, class, subject int) breaker.Outcome {
	switch {
	case code >= 200 && code < 400:
		return breaker.Success
	case code/100 == 4 && class == 4 && subject == 7:
		return breaker.Ignored // rate limits, greylisting
	case code == 421:
		return breaker.Failure // service not available, closing the channel
	case code/100 == 4 && class == 4 && (subject == 3 || subject == 4):
		return breaker.Failure // mail system or network trouble
	case code/100 == 4 && class == 0 && (code == 451 || code == 452):
		return breaker.Failure // local error, insufficient storage
	case code < 200 || code >= 600:
		return breaker.Failure // not SMTP: something in between is broken
	}
	return breaker.Success
}

// enhancedCode parses the class and subject of an RFC 3463 status code at
// the start of text ("4.7.0 ..."): class.subject.detail with class 2, 4 or 5,
// subject 1-3 digits, detail 1-3 digits. It returns 0, 0 when there is none.
func enhancedCode(text string) (class, subject int) {
	if len(text) < 5 || text[1] != '.' || (text[0] != '2' && text[0] != '4' && text[0] != '5') {
		return 0, 0
	}
	i := 2
	for i < len(text) && i < 5 && isDigit(text[i]) {
		subject = subject*10 + int(text[i]-'0')
		i++
	}
	if i == 2 || i >= len(text) || text[i] != '.' {
		return 0, 0
	}
	j := i + 1
	for j < len(text) && j < i+4 && isDigit(text[j]) {
		j++
	}
	if j == i+1 || (j < len(text) && text[j] != ' ' && text[j] != '\r' && text[j] != '\n') {
		return 0, 0
	}
	return int(text[0] - '0'), subject
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
