module github.com/breakerbox/breakerbox/queuegate/amqpgate

go 1.25

require (
	github.com/breakerbox/breakerbox v0.0.0-00010101000000-000000000000
	github.com/rabbitmq/amqp091-go v1.16.0
)

replace github.com/breakerbox/breakerbox => ../..
