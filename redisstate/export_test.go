package redisstate

import "sync"

// HoldFlush makes the flush loop wait before it sends its next batch of
// queued outcomes, until release is called: what is reported meanwhile stays
// queued, as it would on a busy machine. held is closed once the loop waits.
// release may be called more than once (defer it: Close waits for the loop).
func (f *Fleet) HoldFlush() (held <-chan struct{}, release func()) {
	h, r := make(chan struct{}), make(chan struct{})
	first := true
	hook := func() {
		if first {
			first = false
			close(h)
		}
		<-r
	}
	f.beforeFlush.Store(&hook)
	var once sync.Once
	return h, func() {
		once.Do(func() {
			f.beforeFlush.Store(nil)
			close(r)
		})
	}
}
