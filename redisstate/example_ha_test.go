package redisstate_test

import (
	"context"

	"crypto/tls"
	"crypto/x509"
	"log"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/redisstate"
)

// A fleet on Redis Sentinel: the client asks the sentinels for the primary
// of "breakerbox", and follows it when they fail it over. TestSentinelFailoverMidTraffic
// runs this against a primary, a replica and three sentinels, and kills the
// primary mid-traffic.
func ExampleOptions_sentinel() {
	fleet, err := redisstate.New(context.Background(), redisstate.Options{Redis: &redis.UniversalOptions{
		MasterName: "breakerbox",
		Addrs:      []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"},
		Username:   "breakerbox", // an ACL user
		Password:   os.Getenv("BREAKERBOX_REDIS_PASSWORD"),
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer fleet.Close()
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{Default: breaker.Config{Sync: fleet}})
	if err != nil {
		log.Fatal(err)
	}
	_ = reg
}

// A fleet on a Redis Cluster: two or more seed nodes make a cluster client.
// A breaker's keys share a hash tag, so each breaker lives in one slot and
// its scripts run on one node. TestClusterFailoverMidTraffic runs this
// against three primaries with a replica each, and kills the breaker's
// primary mid-traffic.
func ExampleOptions_cluster() {
	fleet, err := redisstate.New(context.Background(), redisstate.Options{Redis: &redis.UniversalOptions{
		Addrs: []string{"10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.3:6379"},
		// IsClusterMode: true, with a single configuration endpoint
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer fleet.Close()
}

// A fleet on a managed Redis over TLS, with a private CA and a client
// certificate. A rediss:// URL is enough when the system's CAs sign the
// server's certificate and no client certificate is needed.
func ExampleOptions_tls() {
	ca, err := os.ReadFile("/etc/breakerbox/redis-ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair("/etc/breakerbox/redis-client.pem", "/etc/breakerbox/redis-client-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	fleet, err := redisstate.New(context.Background(), redisstate.Options{Redis: &redis.UniversalOptions{
		Addrs:     []string{"redis.internal:6380"},
		TLSConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "redis.internal", MinVersion: tls.VersionTLS12},
	}})
	if err != nil {
		log.Fatal(err)
	}
	defer fleet.Close()
}
