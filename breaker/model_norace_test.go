//go:build !race

package breaker_test

// Without the race detector the model test runs its full ≥ 10^6 steps (see
// model_test.go for the counts).
const modelRaceDivisor = 1

// raceDetector: see model_race_test.go.
const raceDetector = false

// concRace shortens the concurrency test under the race detector.
const concRace = false
