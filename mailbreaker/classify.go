package mailbreaker

import (
	"context"
	"errors"
	"net/textproto"
	"reflect"

	"github.com/breakerbox/breakerbox/breaker"
)

// Classify is a breaker.Classifier for the errors of a mail session made
// with a Go client:
//   - net/smtp's *textproto.Error and go-smtp's *smtp.SMTPError by
//     ClassifySMTP (ClassifySMTPGreeting when wrapped with AtConnect);
//   - go-imap v2's *imap.Error by ClassifyIMAP (ClassifyIMAPGreeting when
//     wrapped with AtConnect);
//   - context.Canceled is Ignored: the caller gave up;
//   - anything else is a Failure: refused, reset or timed-out connections,
//     DNS and TLS errors, io.EOF from a server that hung up mid-command.
//
// Errors are looked for anywhere in the chain (errors.As), so wrapping them
// with fmt.Errorf("...: %w", err) keeps their classification.
func Classify(err error) breaker.Outcome {
	if err == nil {
		return breaker.Success
	}
	if errors.Is(err, context.Canceled) {
		return breaker.Ignored
	}
	var ce *connectError
	greeting := errors.As(err, &ce)
	var te *textproto.Error
	if errors.As(err, &te) {
		if greeting {
			return ClassifySMTPGreeting(te.Code, te.Msg)
		}
		return ClassifySMTP(te.Code, te.Msg)
	}
	if o, ok := classifyByShape(err, greeting); ok {
		return o
	}
	return breaker.Failure
}

// AtConnect marks err as the outcome of connecting (dial and greeting), so
// that Classify applies the greeting's rules: 554 at connect is an outage,
// 554 to a command is not.
//
//	c, err := smtp.Dial(addr)
//	if err != nil {
//		return mailbreaker.AtConnect(err)
//	}
func AtConnect(err error) error {
	if err == nil {
		return nil
	}
	return &connectError{err}
}

type connectError struct{ err error }

func (e *connectError) Error() string { return e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

// classifyByShape recognises go-smtp's and go-imap's error structs by their
// fields, walking the chain as errors.As does.
func classifyByShape(err error, greeting bool) (breaker.Outcome, bool) {
	for err != nil {
		v := reflect.ValueOf(err)
		if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
			s := v.Elem()
			if code, class, subject, ok := smtpShape(s); ok {
				if greeting {
					return classifySMTPGreeting(code, class, subject), true
				}
				return classifySMTP(code, class, subject), true
			}
			if status, code, text, ok := imapShape(s); ok {
				if greeting {
					if status == "OK" || status == "PREAUTH" {
						return breaker.Success, true
					}
					return breaker.Failure, true
				}
				return classifyIMAP(status, code, text), true
			}
		}
		switch x := err.(type) {
		case interface{ Unwrap() error }:
			err = x.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range x.Unwrap() {
				if o, ok := classifyByShape(e, greeting); ok {
					return o, true
				}
			}
			return 0, false
		default:
			return 0, false
		}
	}
	return 0, false
}

// smtpShape matches go-smtp's SMTPError: Code int, EnhancedCode [3]int,
// Message string.
func smtpShape(s reflect.Value) (code, class, subject int, ok bool) {
	c, e, m := s.FieldByName("Code"), s.FieldByName("EnhancedCode"), s.FieldByName("Message")
	if !c.IsValid() || !e.IsValid() || !m.IsValid() || c.Kind() != reflect.Int ||
		e.Kind() != reflect.Array || e.Len() != 3 || e.Type().Elem().Kind() != reflect.Int || m.Kind() != reflect.String {
		return 0, 0, 0, false
	}
	class, subject = int(e.Index(0).Int()), int(e.Index(1).Int())
	if class <= 0 { // go-smtp's EnhancedCodeNotSet {0,0,0} and NoEnhancedCode {-1,-1,-1}
		class, subject = 0, 0
	}
	return int(c.Int()), class, subject, true
}

// imapShape matches go-imap v2's Error: Type, Code, Text of string kinds.
func imapShape(s reflect.Value) (status, code, text string, ok bool) {
	t, c, x := s.FieldByName("Type"), s.FieldByName("Code"), s.FieldByName("Text")
	if !t.IsValid() || !c.IsValid() || !x.IsValid() ||
		t.Kind() != reflect.String || c.Kind() != reflect.String || x.Kind() != reflect.String {
		return "", "", "", false
	}
	return t.String(), c.String(), x.String(), true
}
