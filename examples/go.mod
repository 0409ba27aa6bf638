module github.com/breakerbox/breakerbox/examples

go 1.26.0

require (
	github.com/breakerbox/breakerbox v0.0.0-00010101000000-000000000000
	github.com/breakerbox/breakerbox/breakerprom v0.0.0-00010101000000-000000000000
	github.com/breakerbox/breakerbox/internal/redistest v0.0.0-00010101000000-000000000000
	github.com/breakerbox/breakerbox/queuegate/amqpgate v0.0.0-00010101000000-000000000000
	github.com/breakerbox/breakerbox/queuegate/natsgate v0.0.0-00010101000000-000000000000
	github.com/breakerbox/breakerbox/queuegate/queuegateprom v0.0.0-00010101000000-000000000000
	github.com/breakerbox/breakerbox/redisstate v0.0.0-00010101000000-000000000000
	github.com/nats-io/nats.go v1.55.0
	github.com/prometheus/client_golang v1.23.2
	github.com/rabbitmq/amqp091-go v1.16.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/klauspost/compress v1.20.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/prometheus/client_model v0.6.2 // indirect
	github.com/prometheus/common v0.66.1 // indirect
	github.com/prometheus/procfs v0.16.1 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v2 v2.4.2 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.8 // indirect
)

replace (
	github.com/breakerbox/breakerbox => ..
	github.com/breakerbox/breakerbox/breakerprom => ../breakerprom
	github.com/breakerbox/breakerbox/internal/redistest => ../internal/redistest
	github.com/breakerbox/breakerbox/queuegate/amqpgate => ../queuegate/amqpgate
	github.com/breakerbox/breakerbox/queuegate/natsgate => ../queuegate/natsgate
	github.com/breakerbox/breakerbox/queuegate/queuegateprom => ../queuegate/queuegateprom
	github.com/breakerbox/breakerbox/redisstate => ../redisstate
)
