package redisstate_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os/exec"
	"strconv"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/redisstate"
)

// Two replicas of a service share the breaker of a Genesys region through
// Redis: failures seen by either open it on both.
func Example() {
	stop, url := startRedis()
	defer stop()

	region := "genesys/eu-west-1"
	var replicas []*breaker.Breaker
	for _, name := range []string{"replica-1", "replica-2"} {
		fleet, err := redisstate.New(context.Background(), redisstate.Options{URL: url, Replica: name, Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		defer fleet.Close()
		waitJoined(fleet)
		b, err := breaker.New(breaker.Config{Name: region, FailureThreshold: 10, Sync: fleet, Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		replicas = append(replicas, b)
	}

	down := errors.New("503 from the region")
	for i := range 10 { // 5 failures on each replica: neither sees 10 alone
		replicas[i%2].Do(context.Background(), func(context.Context) error { return down })
	}
	for replicas[0].State() != breaker.Open || replicas[1].State() != breaker.Open {
		time.Sleep(time.Millisecond) // the fleet's decision arrives within milliseconds
	}
	err := replicas[1].Do(context.Background(), func(context.Context) error { return nil })
	fmt.Println(replicas[0].State(), replicas[1].State(), errors.Is(err, breaker.ErrOpen))
	// Output: open open true
}

func waitJoined(f *redisstate.Fleet) {
	for deadline := time.Now().Add(10 * time.Second); f.Stats().Degraded; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			log.Fatal("Redis did not answer")
		}
	}
}

// startRedis starts a throwaway redis-server on a free loopback port.
func startRedis() (stop func(), url string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		log.Fatal("redis-server: ", err)
	}
	return func() { cmd.Process.Kill(); cmd.Wait() }, "redis://127.0.0.1:" + port + "/0"
}
