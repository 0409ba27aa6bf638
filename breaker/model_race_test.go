//go:build race

package breaker_test

// The race detector slows the model test down about tenfold: run 1/4 of the
// steps (see model_test.go for the counts).
const modelRaceDivisor = 4
