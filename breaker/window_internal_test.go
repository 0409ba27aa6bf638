package breaker

import (
	"math/big"
	"strconv"
	"testing"
)

// TestTripsAtRateExhaustive checks the failure-rate comparison against exact
// rational arithmetic for every failure count of every call count up to
// 1,000, at every threshold of two decimals and a spread of three and more.
// In floating point, 141 of these boundaries were missed (55 of 100 at 0.55).
func TestTripsAtRateExhaustive(t *testing.T) {
	var thresholds []float64
	for k := 1; k <= 100; k++ {
		thresholds = append(thresholds, float64(k)/100)
	}
	for k := 1; k <= 1000; k += 37 {
		thresholds = append(thresholds, float64(k)/1000)
	}
	thresholds = append(thresholds, 0.123456789, 0.999999999, 0.000000001, 1e-12, 0.3333333333333333)
	for _, th := range thresholds {
		want, _ := new(big.Rat).SetString(strconv.FormatFloat(th, 'f', -1, 64))
		if th < 1.0/rateScale {
			want.SetFrac64(1, rateScale) // below the resolution: one part per billion
		}
		if th == 0.3333333333333333 {
			want.SetFrac64(333333333, rateScale) // read to nine decimals
		}
		num, den := want.Num().Int64(), want.Denom().Int64()
		parts := rateParts(th)
		missed := 0
		for calls := 1; calls <= 1000; calls++ {
			for failures := 0; failures <= calls; failures++ {
				exact := int64(failures)*den >= num*int64(calls)
				if rateReached(failures, calls, parts) != exact {
					missed++
					if missed <= 5 {
						t.Errorf("Threshold %v: %d of %d failed: tripped = %v, want %v", th, failures, calls, !exact, exact)
					}
				}
			}
		}
		if missed > 0 {
			t.Errorf("Threshold %v: %d boundaries missed", th, missed)
		}
	}
}

func TestRateReachedDoesNotOverflow(t *testing.T) {
	const huge = 1 << 62
	if !rateReached(huge, huge, rateParts(1)) {
		t.Error("2⁶² of 2⁶² calls failed: not at a threshold of 1")
	}
	if rateReached(huge/2-1, huge, rateParts(0.5)) {
		t.Error("just under half of 2⁶² calls failed: tripped at 0.5")
	}
	if !rateReached(huge/2, huge, rateParts(0.5)) {
		t.Error("half of 2⁶² calls failed: not tripped at 0.5")
	}
}
