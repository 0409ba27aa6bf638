package natsgate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/brokertest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
	"github.com/breakerbox/breakerbox/queuegate"
	"github.com/breakerbox/breakerbox/queuegate/natsgate"
)

// nats-server killed with kill -9 mid-traffic and restarted on its port with
// its store: the consumer's connection reconnects (nats.go's own reconnect,
// as the package documentation asks), the consumer resumes, and every
// message is handled; none is dead-lettered or charged a failure.
func TestConsumerSurvivesABrokerRestart(t *testing.T) {
	srv := brokertest.StartNATS(t)
	testOutage(t, srv.URL(), srv.URL(), func() {
		srv.Kill()
		time.Sleep(300 * time.Millisecond) // the consumer fetches, acks and fails while the broker is gone
		srv.Restart()
	})
}

// The consumer's connection dropped twice mid-traffic, and refused for a
// while, by a proxy between it and a server that stays up.
func TestConsumerSurvivesDroppedConnections(t *testing.T) {
	srv := brokertest.StartNATS(t)
	p := newProxy(t, strings.TrimPrefix(srv.URL(), "nats://"))
	testOutage(t, srv.URL(), "nats://"+p.addr, func() {
		for range 2 {
			p.cut(300 * time.Millisecond)
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// testOutage runs a consumer (connected to consumerURL) through outage,
// called once a third of the messages are handled, while a publisher
// (connected to url) keeps publishing.
func testOutage(t *testing.T, url, consumerURL string, outage func()) {
	const total = 300
	logs := &syncbuf.Buffer{}
	logger := slogTo(logs)
	connect := func(url, name string) *nats.Conn {
		nc, err := nats.Connect(url, append(natsgate.ReconnectOptions(logger), nats.Name(name))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	pubJS, _ := jetstream.New(connect(url, "publisher"))
	js, _ := jetstream.New(connect(consumerURL, "consumer"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// File storage (the default): the stream survives a restart.
	for name, subject := range map[string]string{"INBOUND": "inbound.>", "DEAD": "dead.>"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "INBOUND", jetstream.ConsumerConfig{
		Durable: "forwarder-us-east-1", FilterSubject: "inbound.us-east-1",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	handled := map[string]int{}
	count := func() (distinct, all int) {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range handled {
			all += n
		}
		return len(handled), all
	}
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	c, err := natsgate.New(natsgate.Config{
		Consumer: cons, Gate: gate, Concurrency: concurrency, FetchWait: 200 * time.Millisecond, Logger: logger,
		DeadLetter: natsgate.DeadLetterTo(js, "dead.inbound.us-east-1"),
		Handler: func(ctx context.Context, msg jetstream.Msg) error {
			time.Sleep(2 * time.Millisecond) // a call to the API: traffic is in flight when the connection goes
			mu.Lock()
			handled[string(msg.Data())]++
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()

	// The publisher keeps publishing through the outage: each message until
	// the stream confirms it, deduplicated by its id.
	published := make(chan error, 1)
	go func() {
		for i := range total {
			m := nats.NewMsg("inbound.us-east-1")
			m.Data = fmt.Appendf(nil, "m-%03d", i)
			m.Header.Set(jetstream.MsgIDHeader, string(m.Data))
			for {
				pctx, cancel := context.WithTimeout(ctx, time.Second)
				_, err := pubJS.PublishMsg(pctx, m)
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					published <- err
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		published <- nil
	}()

	waitFor(t, ctx, "a third of the messages handled", func() bool { d, _ := count(); return d >= total/3 })
	outage()
	if d, _ := count(); d == total {
		t.Fatal("every message was handled before the outage ended: nothing was tested")
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "every message handled", func() bool { d, _ := count(); return d == total })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	d, all := count()
	st := gate.Stats()
	t.Logf("%d messages, %d handled, %d handler calls (duplicates: acks lost in the outage); gate %+v; consumer %+v", total, d, all, st, c.Stats())
	if st.DeadLettered != 0 || st.Retried != 0 || c.Stats().Exhausted != 0 {
		t.Errorf("dead-lettered %d, retried %d, exhausted %d; want 0, 0, 0", st.DeadLettered, st.Retried, c.Stats().Exhausted)
	}
	if dead, err := js.Stream(ctx, "DEAD"); err == nil {
		if info, err := dead.Info(ctx); err == nil && info.State.Msgs != 0 {
			t.Errorf("%d dead letters, want 0", info.State.Msgs)
		}
	}
	if !strings.Contains(logs.String(), "connection to the NATS server lost; reconnecting until it is back\" conn=consumer") ||
		!strings.Contains(logs.String(), "reconnected to the NATS server\" conn=consumer") {
		t.Errorf("the consumer's connection did not log its outage; logs:\n%s", logs)
	}
}

// proxy relays TCP connections to a server; cut drops them all and refuses
// new ones for a while, as a network fault would.
type proxy struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn
	until time.Time // refuse connections until then
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &proxy{addr: l.Addr().String()}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			refuse := time.Now().Before(p.until)
			p.mu.Unlock()
			out, err := net.Dial("tcp", target)
			if refuse || err != nil {
				in.Close()
				if out != nil {
					out.Close()
				}
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() { p.cut(0) })
	return p
}

func (p *proxy) cut(refuseFor time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.until = time.Now().Add(refuseFor)
}

// A connection closed for good (by its owner, or by nats.go after its last
// attempt) ends Run with an error, rather than a fetch retried forever.
func TestRunReturnsWhenItsConnectionIsClosed(t *testing.T) {
	nc, js := jetStream(t)
	b, _ := breaker.New(breaker.Config{Name: "genesys/us-east-1", Logger: quiet})
	gate, _ := queuegate.New(queuegate.Config{Breaker: b, Logger: quiet})
	c, err := natsgate.New(natsgate.Config{
		Consumer: consumerFor(t, js, "us-east-1"), Gate: gate, FetchWait: 100 * time.Millisecond, Logger: quiet,
		Handler: func(context.Context, jetstream.Msg) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for c.Stats().Fetches == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, nats.ErrConnectionClosed) {
			t.Fatalf("Run: %v, want nats.ErrConnectionClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Run kept going on a closed connection")
	}
}

// The reconnection backoff doubles from ReconnectMin to ReconnectMax, with
// up to half again as jitter, and never overflows.
func TestReconnectDelayDoublesUpToItsCap(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		base    time.Duration
	}{
		{0, natsgate.ReconnectMin}, {1, natsgate.ReconnectMin}, {2, 2 * natsgate.ReconnectMin},
		{3, 4 * natsgate.ReconnectMin}, {7, natsgate.ReconnectMax}, {1000, natsgate.ReconnectMax},
	} {
		for range 50 {
			if d := natsgate.ReconnectDelay(tc.attempt); d < tc.base || d > tc.base+tc.base/2 {
				t.Fatalf("attempt %d: %v, want between %v and %v", tc.attempt, d, tc.base, tc.base+tc.base/2)
			}
		}
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
