// Command oldreplica is a replica of the fleet as of commit c72aaa2, the last
// before wire versions (v0): TestAnOldAndANewReplicaShareOneFleet builds it
// inside that commit's tree (git archive), where it compiles against that
// commit's redisstate and breaker. It is written against that API and never
// changes with this one's.
//
// It shares one breaker and takes commands on stdin, one a line, answering
// each with one line on stdout:
//
//	fail N | succeed N    N calls that fail or succeed → "ok"
//	joined                wait until the fleet told the breaker its state → "ok" or the error
//	state                 → the breaker's state
//	probe                 take a call's ticket and hold it → "granted" or "denied"
//	done success|failure  report the held ticket → "ok"
//	force-open | reset    an operator's action → "ok"
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/redisstate"
)

func main() {
	url := flag.String("url", "", "Redis URL")
	name := flag.String("replica", "old", "replica name")
	key := flag.String("breaker", "", "breaker name")
	threshold := flag.Int("threshold", 4, "FailureThreshold")
	open := flag.Duration("open", time.Second, "OpenTimeout")
	timeout := flag.Duration("timeout", 0, "Options.Timeout")
	flag.Parse()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f, err := redisstate.New(redisstate.Options{URL: *url, Replica: *name, Timeout: *timeout, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	b, err := breaker.New(breaker.Config{Name: *key, FailureThreshold: *threshold, OpenTimeout: *open,
		HalfOpenSuccesses: 1, HalfOpenProbes: 1, ProbeTimeout: time.Minute, Sync: f, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	down := errors.New("503")
	var held breaker.Ticket
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var n int
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		answer := "ok"
		switch cmd {
		case "fail", "succeed":
			fmt.Sscan(arg, &n)
			for range n {
				b.Do(context.Background(), func(context.Context) error {
					if cmd == "fail" {
						return down
					}
					return nil
				})
			}
		case "joined":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := f.Joined(ctx); err != nil {
				answer = err.Error()
			}
			cancel()
		case "state":
			answer = b.State().String()
		case "probe":
			t, err := b.Allow()
			if answer = "granted"; err != nil {
				answer = "denied"
			}
			held = t
		case "done":
			if arg == "success" {
				held.Done(nil)
			} else {
				held.Done(down)
			}
		case "force-open":
			b.ForceOpen()
		case "reset":
			b.Reset()
		default:
			answer = "unknown command " + cmd
		}
		fmt.Println(answer)
	}
}
