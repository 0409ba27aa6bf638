module github.com/breakerbox/breakerbox

go 1.24

require (
	github.com/cenkalti/backoff/v5 v5.0.3 // indirect
	github.com/prometheus/client_golang v1.23.2 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)
