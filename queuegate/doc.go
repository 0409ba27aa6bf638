// Package queuegate makes a queue consumer wait out an outage of the service
// it feeds: while the service's circuit breaker is open the consumer stops
// fetching, the messages it holds go back to the broker with a delay, and no
// message is lost, dead-lettered or charged a failure because of the outage.
//
// # Why a plain NACK is harmful
//
// T10 says "when the circuit is OPEN, NACK the message; it will be retried
// when the circuit closes". Done naively that hurts: RabbitMQ and JetStream
// redeliver a plain NACK at once, so the consumer takes the message again,
// the breaker rejects it again, and the loop spins at full CPU for the whole
// outage. Every turn spends one of the message's deliveries: a RabbitMQ quorum
// queue drops (or dead-letters) a message after its delivery limit, JetStream
// stops at MaxDeliver, so healthy messages end up dead-lettered or lost for an
// outage that was never their fault.
//
// # The model
//
// A Gate follows one circuit (a breaker, or a registry key such as
// "genesys/eu-west-1") and has three modes that mirror the breaker:
//
//   - Flowing (CLOSED): every message is admitted; the consumer fetches at
//     full speed.
//   - Paused (OPEN): nothing is admitted. Acquire blocks without polling until
//     the breaker's next transition (Breaker.Changed), so the consumer fetches
//     nothing and uses no CPU. A message already in hand is deferred: given
//     back with a delay of the breaker's RetryAfter plus jitter, never at once.
//   - Probing (HALF_OPEN): as many messages at once as the breaker has probe
//     slots (HalfOpenProbes). Their outcomes close the circuit, and the gate
//     resumes full speed, or reopen it, and the gate pauses again.
//
// Each change of mode is an Event (Config.OnEvent and a log/slog record) and
// shows in Stats (pauses, resumes, time paused, verdicts), which package
// queuegateprom exports to Prometheus.
//
// The consumer's handler makes its calls through the breaker, as it would
// without a gate: with httpbreaker, Breaker.Do or breaker.Call. The gate does
// not take the breaker's tickets itself; it decides when to fetch and how many
// messages to hold, and reads the handler's error:
//
//   - nil: Ack.
//   - a rejection by an open circuit (errors.Is(err, breaker.ErrOpen)): the
//     call was never made, so the message is deferred by the rejection's
//     RetryAfter plus jitter and counts as nothing, for the message or for the
//     breaker (a breaker never counts its own rejections).
//   - an error marked with MarkDeadLetter (a 4xx: the message is bad): the
//     queue's ordinary dead-letter path, untouched by the gate.
//   - any other error (a 5xx after the retries, a timeout) while the circuit
//     stays closed: Retry, after Config.RetryDelay, charged to the message's
//     retry budget (it may be the message's fault).
//   - the same failure of a HALF_OPEN probe, or with the circuit open once
//     it failed (it opened the circuit, or came as it opened): Defer with
//     Verdict.Outage, after the breaker's RetryAfter. The breaker counted the
//     failure; the message is not charged, so however many probes fail in a
//     long outage, no healthy message runs out of retries because of it.
//   - a handler cut short because its context ended (a consumer stopping
//     past its drain timeout): Defer after RetryDelay, never at once.
//
// # A circuit other than the gate's
//
// The gate pauses the consumer only while its own circuit is open. A handler
// that also calls through another breaker (a second service, a shared
// dependency) gets that breaker's rejection while it is open; the message is
// deferred by that breaker's RetryAfter, as it should be, but the gate's own
// circuit is closed, so the consumer keeps fetching: every message is taken,
// rejected and given back, one delivery each per RetryAfter, for as long as
// the other circuit stays open. That is no spin (every message waits out its
// delay), but it is no pause either: it costs a delivery and a broker round
// trip per message and RetryAfter, and on JetStream with a MaxDeliver, or a
// queue with a delivery limit, it spends the budget. Gate each consumer on the
// circuit its messages depend on; a handler that depends on two services
// should have its messages split per service, or be gated on the one that
// fails.
//
// # Stopping
//
// The adapters run handlers on a context that is not cancelled with the
// consumer's (context.WithoutCancel), for up to a drain timeout: on shutdown
// they stop fetching, let the calls in flight finish and settle them, so a
// call to the service is not cut in the middle and sent again. A consumer
// loop of one's own should do the same.
//
// # Using it
//
// Per region: make one gate per circuit key and one consumer per gate (one
// subject or queue per region), so an outage of one region pauses only that
// region's messages while the others keep flowing.
//
//	gate, err := queuegate.New(queuegate.Config{Registry: reg, Key: "genesys/eu-west-1"})
//
// A consumer loop, whatever the broker:
//
//	for {
//		permit, err := gate.Acquire(ctx) // blocks while the circuit is open
//		if err != nil {
//			return err // ctx done
//		}
//		msg := fetchOne()
//		v := permit.Run(ctx, func(ctx context.Context) error { return forward(ctx, msg) })
//		switch v.Action {
//		case queuegate.Ack:
//			msg.Ack()
//		case queuegate.Defer: // the outage's: not charged to the message
//			msg.NackWithDelay(v.Delay)
//		case queuegate.Retry: // charged: dead-letter once it failed too often
//			msg.NackWithDelay(v.Delay)
//		case queuegate.DeadLetter:
//			msg.Reject()
//		}
//	}
//
// Package natsgate runs this loop for a JetStream pull consumer: it fetches
// only as many messages as it holds permits for, and gives messages back with
// NakWithDelay. Package amqpgate runs it for a RabbitMQ queue: it cancels the
// consumer while the circuit is open and re-consumes with a prefetch of the
// probe slots, then of its full concurrency; a delayed redelivery goes
// through a retry queue whose per-message TTL dead-letters the message back
// to the work queue, at least once, so it neither spins nor spends a quorum
// queue's delivery limit, and survives a restart of the broker.
//
// Package queuegate imports only the standard library and package breaker.
package queuegate
