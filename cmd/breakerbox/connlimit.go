package main

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connLimiter is a net.Listener that keeps at most max connections open, so
// that a flood of connections runs into the cap instead of the process's
// file-descriptor limit (where nothing, the admin API included, could
// accept anything).
//
// At the cap, a new connection does not wait behind idle ones: it closes the
// connection that has been idle longest, a keep-alive between requests or a
// connection that has not sent a whole request head yet, once it has been
// idle for evictAfter (so a thousand idle clients cannot starve the next
// one, and a burst of new clients does not close each other's connections
// before their requests are read). Only when every connection is in the middle
// of a request does Accept wait for one to end; netutil.LimitListener
// would wait in every case, and so let idle connections hold the listener
// forever. Each listener has its own limiter: the proxy at its cap never
// takes the admin listener's connections.
//
// The http.Server must report connection states to connState.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[*limitedConn]struct{}

	wake      chan struct{} // a slot freed or a connection went idle
	done      chan struct{}
	closeOnce sync.Once
}

func newConnLimiter(l net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: l, max: max, conns: map[*limitedConn]struct{}{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// limitedConn is a connection counted by a connLimiter.
type limitedConn struct {
	net.Conn
	l *connLimiter
	// idleSince is when the connection last became idle (or was accepted),
	// in Unix nanoseconds; 0 while a request is in progress or the
	// connection is hijacked.
	idleSince atomic.Int64
	closeOnce sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.signal()
	})
	return err
}

func (l *connLimiter) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Accept returns the next connection once it fits under the cap.
func (l *connLimiter) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &limitedConn{Conn: raw, l: l}
	c.idleSince.Store(time.Now().UnixNano())
	for {
		l.mu.Lock()
		if len(l.conns) < l.max {
			l.conns[c] = struct{}{}
			l.mu.Unlock()
			return c, nil
		}
		victim, wait := l.longestIdle(time.Now())
		l.mu.Unlock()
		if victim != nil {
			victim.Close()
			continue
		}
		if !l.await(wait) {
			raw.Close()
			return nil, net.ErrClosed
		}
	}
}

// await waits until a slot may have freed: a wake-up, or wait elapsed (if
// positive: the oldest idle connection becomes evictable). It reports false
// if the listener closed.
func (l *connLimiter) await(wait time.Duration) bool {
	var due <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		due = t.C
	}
	select {
	case <-l.wake:
	case <-due:
	case <-l.done:
		return false
	}
	return true
}

// evictAfter is how long a connection must have been idle before a new one
// may close it.
const evictAfter = 250 * time.Millisecond

// longestIdle returns the connection idle longest if it has been idle for
// evictAfter; else nil and how long until it will have been (0 if every
// connection is busy). It requires l.mu.
func (l *connLimiter) longestIdle(now time.Time) (*limitedConn, time.Duration) {
	var oldest *limitedConn
	var since int64
	for c := range l.conns {
		if t := c.idleSince.Load(); t != 0 && (oldest == nil || t < since) {
			oldest, since = c, t
		}
	}
	if oldest == nil {
		return nil, 0
	}
	if idle := now.Sub(time.Unix(0, since)); idle < evictAfter {
		return nil, evictAfter - idle
	}
	return oldest, 0
}

// connState is the http.Server's ConnState hook.
func (l *connLimiter) connState(nc net.Conn, s http.ConnState) {
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	switch s {
	case http.StateIdle:
		c.idleSince.Store(time.Now().UnixNano())
		l.signal()
	case http.StateActive, http.StateHijacked:
		c.idleSince.Store(0)
	}
}

// Close stops Accept, including one waiting for a free slot.
func (l *connLimiter) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}
