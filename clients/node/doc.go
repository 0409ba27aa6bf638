// Package node holds no Go code of the Node client: its test runs the
// client's own tests (npm test: node's test runner against the real sidecar
// and a real RabbitMQ), so that the README's one command,
// go test -race $(go list -m -f '{{.Dir}}/...'), runs every test, Node's
// included. See README.md in this directory for the client itself.
package node
