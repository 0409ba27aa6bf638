// Package mailbreaker classifies what SMTP and IMAP servers say, so that a
// circuit breaker counts provider outages and nothing else: a bounced
// recipient or a wrong password is the provider answering, not the provider
// being down.
//
// # The model
//
// One mail session (connect, greet, authenticate, send or fetch, quit) is one
// call of the breaker, and its outcome is the worst infrastructure outcome
// seen in it, in the order Success < Ignored < Failure. Each server reply maps
// to one of three outcomes, in the spirit of T10's HTTP rule (5xx fails, 4xx
// is the caller's problem, 429 is a rate limit):
//
//	outcome  what the server said                                    reference
//	-------  ------------------------------------------------------  --------------------------------
//	Failure  connect refused, reset or timed out; DNS failure;       (transport)
//	         TLS handshake failure; the server drops the session
//	         while a command awaits its reply, or closes it without
//	         a 421 or BYE first; no reply in time
//	Failure  SMTP greeting other than 220 (421, 554, ...)            RFC 5321 §3.1, §4.2.3
//	Failure  SMTP 421 to any command                                 RFC 5321 §3.8 (service closing)
//	Failure  SMTP 4.3.x (mail system) or 4.4.x (network, routing)    RFC 3463 §3.5, §3.6
//	Failure  SMTP 451 or 452 without an enhanced code                RFC 5321 §4.2.2 (local error,
//	                                                                 insufficient storage)
//	Failure  IMAP greeting other than * OK or * PREAUTH              RFC 9051 §7.1 (* BYE at connect)
//	Failure  IMAP BYE in the middle of a command (not the answer to  RFC 9051 §7.1.5
//	         LOGOUT, nor the close of a session left idle)
//	Failure  IMAP NO/BAD [UNAVAILABLE] or [SERVERBUG]                RFC 5530 §3
//	Success  SMTP 2xx, 3xx                                           RFC 5321 §4.2.1
//	Success  SMTP 5xx: recipients and mailboxes (5.1.x, 5.2.x),      RFC 3463 §3.2, §3.3, §3.8;
//	         authentication (535 5.7.8) and every other permanent    RFC 4954 §6
//	         reply: the server answered
//	Success  SMTP 4xx with another enhanced code (450 4.2.1 busy     RFC 3463 §3.3, §3.4, §3.6, §3.7
//	         mailbox, 452 4.5.3 too many recipients)
//	Success  IMAP OK, PREAUTH; NO and BAD with any other code or     RFC 9051 §7.1; RFC 5530 §3
//	         none: [AUTHENTICATIONFAILED], [NONEXISTENT],
//	         [TRYCREATE], [OVERQUOTA], [NOPERM], [LIMIT], ...
//	Ignored  SMTP 4xx with 4.7.x: rate limits and greylisting        RFC 3463 §3.8
//	         (421 4.7.0, 451 4.7.1, 454 4.7.0), greeting included
//	Ignored  IMAP NO [THROTTLED] or "... throttled ..." (Exchange    (vendor practice)
//	         Online: "NO Request is throttled. Suggested Backoff")
//	Ignored  the caller cancelled its own context                    (breaker.DefaultClassifier)
//
// Throttling is Ignored rather than Success: a throttled session is no
// evidence that the provider is healthy, so it must not close a half-open
// circuit, and it is no evidence of an outage either.
//
// # Using it
//
// ClassifySMTP, ClassifySMTPGreeting, ClassifyIMAP and ClassifyIMAPGreeting
// classify one reply. Classify is a breaker.Classifier for the errors Go mail
// clients return: net/smtp's *textproto.Error, go-smtp's *smtp.SMTPError,
// go-imap v2's *imap.Error, and network and TLS errors. Set it as the
// breaker's Config.Classify and run each session with Breaker.Do. An error
// from dialing (the greeting) reads differently from the same reply to a
// command (554 at connect is an outage, 554 to RCPT is a rejected
// recipient), so wrap dial errors with AtConnect.
//
// The root module requires nothing, so go-smtp and go-imap errors are
// recognised by their shape, not their type: a pointer to a struct with
// fields Code int, EnhancedCode [3]int and Message string (go-smtp), or
// Type, Code and Text of string kinds (go-imap v2). The match is done with
// package reflect, on the error path only.
package mailbreaker
