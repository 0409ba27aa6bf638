package redisstate

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// newClient makes the fleet's own client, from Options.Redis or Options.URL,
// with the fail-fast settings a fleet needs: a command that fails is a fault
// to handle (decide locally, rejoin later), not one to repeat, and no call
// waits on Redis longer than its context allows.
func (o *Options) newClient() (redis.UniversalClient, error) {
	if o.Redis != nil {
		u := *o.Redis // the caller's options stay as they were
		u.ContextTimeoutEnabled = true
		u.MaxRetries = -1
		u.DialTimeout = 2 * o.Timeout
		u.ReadTimeout = 10 * o.Timeout
		u.WriteTimeout = 10 * o.Timeout
		u.PoolTimeout = o.Timeout
		return redis.NewUniversalClient(&u), nil
	}
	ro, err := redis.ParseURL(o.URL)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // its message holds the whole URL, password included
	}
	if err != nil {
		return nil, fmt.Errorf("redisstate: URL %q: %v (want redis://[user:password@]host:port[/db], or rediss:// for TLS)", redact(o.URL), err)
	}
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1
	ro.DialTimeout = 2 * o.Timeout
	ro.ReadTimeout = 10 * o.Timeout
	ro.WriteTimeout = 10 * o.Timeout
	ro.PoolTimeout = o.Timeout
	return redis.NewClient(ro), nil
}

// checkClient checks the options that choose the client.
func (o *Options) checkClient() error {
	switch {
	case o.Client == nil && o.Redis == nil && o.URL == "":
		return errors.New("redisstate: no Redis: set Options.URL (redis://host:port/db), Options.Redis (Sentinel, Cluster, TLS) or Options.Client")
	case o.Client != nil && o.Redis != nil:
		return errors.New("redisstate: both Options.Client and Options.Redis are set: set one")
	case o.Redis != nil && o.URL != "":
		return errors.New("redisstate: both Options.URL and Options.Redis are set: set one (put the URL's address in Redis.Addrs)")
	case o.Redis != nil && len(o.Redis.Addrs) == 0:
		return errors.New("redisstate: Options.Redis.Addrs is empty: list the server (host:port), the sentinels (with MasterName) or the cluster's seed nodes")
	case strings.ContainsAny(o.Prefix, "{}"):
		// The key's hash tag is the first {…}: one in the prefix would put
		// every breaker in one Redis Cluster slot, or split a breaker's keys.
		return fmt.Errorf("redisstate: Options.Prefix = %q: must not contain { or }", o.Prefix)
	}
	return nil
}
