package mailbreaker_test

import (
	"context"
	"fmt"
	"net/textproto"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/mailbreaker"
)

func ExampleClassifySMTP() {
	fmt.Println(mailbreaker.ClassifySMTP(421, "4.3.2 System not accepting network messages"))
	fmt.Println(mailbreaker.ClassifySMTP(550, "5.1.1 Recipient address rejected"))
	fmt.Println(mailbreaker.ClassifySMTP(451, "4.7.1 Greylisted, try again in 5 minutes"))
	// Output:
	// failure
	// success
	// ignored
}

func ExampleClassifyIMAP() {
	fmt.Println(mailbreaker.ClassifyIMAP("a1 NO [UNAVAILABLE] Backend unavailable"))
	fmt.Println(mailbreaker.ClassifyIMAP("a1 NO [AUTHENTICATIONFAILED] Invalid credentials"))
	fmt.Println(mailbreaker.ClassifyIMAPGreeting("* BYE Too many connections"))
	// Output:
	// failure
	// success
	// failure
}

// A breaker for an SMTP provider with ADR-002's SMTP profile (10 failures,
// 120 s). Each session runs under Do; its error is classified by Classify.
// Here the "session" returns the errors net/smtp would.
func ExampleClassify() {
	b, _ := breaker.New(breaker.Config{
		Name:             "smtp.example.com",
		FailureThreshold: 10,
		OpenTimeout:      120 * time.Second,
		Classify:         mailbreaker.Classify,
	})
	sessions := []error{
		&textproto.Error{Code: 550, Msg: "5.1.1 user unknown"},          // the provider answered: success
		&textproto.Error{Code: 535, Msg: "5.7.8 bad credentials"},       // ours to fix: success
		mailbreaker.AtConnect(&textproto.Error{Code: 421, Msg: "busy"}), // outage: failure
	}
	for _, err := range sessions {
		_ = b.Do(context.Background(), func(context.Context) error { return err })
	}
	s := b.Snapshot()
	fmt.Println(s.State, "failures in a row:", s.ConsecutiveFailures)
	// Output:
	// closed failures in a row: 1
}
