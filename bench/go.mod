module github.com/breakerbox/breakerbox/bench

go 1.26.0

replace github.com/breakerbox/breakerbox => ../

require (
	github.com/breakerbox/breakerbox v0.0.0-00010101000000-000000000000
	github.com/cenk/backoff v2.2.1+incompatible
	github.com/eapache/go-resiliency v1.7.0
	github.com/failsafe-go/failsafe-go v0.9.8
	github.com/rubyist/circuitbreaker v2.2.1+incompatible
	github.com/sony/gobreaker/v2 v2.4.0
	github.com/valyala/fasthttp v1.79.0
)

require (
	github.com/bits-and-blooms/bitset v1.24.4 // indirect
	github.com/facebookgo/clock v0.0.0-20150410010913-600d898af40a // indirect
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/molecule-man/go-brrr v1.3.1 // indirect
	github.com/peterbourgon/g2s v0.0.0-20170223122336-d4e7ad98afea // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
)
