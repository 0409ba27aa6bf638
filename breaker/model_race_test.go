//go:build race

package breaker_test

// modelRaceDivisor divides the model test's steps under the race detector.
// The race detector makes the model test about 5× slower, and the full
// 1 024 000 steps still take only ~7 s on a 2-core machine, so it is 1; raise
// it if a slower machine needs it (see model_test.go for the counts).
const modelRaceDivisor = 1

// raceDetector: allocation counts mean nothing under the race detector
// (sync.Pool drops items at random there), so tests skip those assertions.
const raceDetector = true

// concRace shortens the concurrency test under the race detector.
const concRace = true
