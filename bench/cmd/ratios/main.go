// Command ratios reads `go test -bench` output of the bench module and
// prints, per scenario and GOMAXPROCS, how many times faster breakerbox is
// than each other library (median ns/op over the -count runs), then checks
// the performance targets of issue 2 / DESIGN.md.
//
//	go run ./cmd/ratios results.txt
package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

var libs = []string{"baseline", "breakerbox", "gobreaker", "failsafe", "eapache", "rubyist"}

type key struct {
	scenario string
	procs    int
	lib      string
}

type samples struct{ ns, allocs []float64 }

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ratios results.txt")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()

	data := map[key]*samples{}
	var scenarios []string
	var procsSeen []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, ns, allocs, ok := parse(sc.Text())
		if !ok {
			continue
		}
		s := data[k]
		if s == nil {
			s = new(samples)
			data[k] = s
		}
		s.ns = append(s.ns, ns)
		s.allocs = append(s.allocs, allocs)
		if !slices.Contains(scenarios, k.scenario) {
			scenarios = append(scenarios, k.scenario)
		}
		if !slices.Contains(procsSeen, k.procs) {
			procsSeen = append(procsSeen, k.procs)
		}
	}
	slices.Sort(procsSeen)

	med := func(k key) (ns, allocs float64, ok bool) {
		s := data[k]
		if s == nil {
			return 0, 0, false
		}
		return median(s.ns), median(s.allocs), true
	}

	fmt.Println("Median ns/op of breakerbox, and how many times slower each other library is (lib ns/op ÷ breakerbox ns/op;")
	fmt.Println("for the baseline, breakerbox ns/op ÷ baseline ns/op: what breakerbox costs over the floor). `—`: not measured.")
	fmt.Println()
	head := "| scenario | cpu | breakerbox ns/op (allocs) | vs baseline |"
	sep := "|---|---|---|---|"
	for _, l := range libs[2:] {
		head += " " + l + " |"
		sep += "---|"
	}
	fmt.Println(head)
	fmt.Println(sep)
	for _, s := range scenarios {
		for _, p := range procsSeen {
			bb, bbAllocs, ok := med(key{s, p, "breakerbox"})
			if !ok {
				continue
			}
			row := fmt.Sprintf("| %s | %d | %s (%g) |", s, p, fmtNs(bb), bbAllocs)
			if base, _, ok := med(key{s, p, "baseline"}); ok {
				row += fmt.Sprintf(" %.2f× of %s |", bb/base, fmtNs(base))
			} else {
				row += " — |"
			}
			for _, l := range libs[2:] {
				if ns, allocs, ok := med(key{s, p, l}); ok {
					row += fmt.Sprintf(" **%.1f×** (%s, %g allocs) |", ns/bb, fmtNs(ns), allocs)
				} else {
					row += " — |"
				}
			}
			fmt.Println(row)
		}
	}

	fmt.Println()
	fmt.Println("Targets (issue 2, DESIGN.md \"Performance targets\"):")
	fmt.Println()
	check := func(ok bool, format string, args ...any) {
		mark := "PASS"
		if !ok {
			mark = "FAIL"
		}
		fmt.Printf("- %s: %s\n", mark, fmt.Sprintf(format, args...))
	}
	for _, p := range procsSeen {
		bb, allocs, ok1 := med(key{"ClosedSuccess", p, "breakerbox"})
		base, _, ok2 := med(key{"ClosedSuccess", p, "baseline"})
		if ok1 && ok2 {
			check(bb <= 2*base, "closed success within 2× the baseline at -cpu %d: %s vs %s (%.2f×)", p, fmtNs(bb), fmtNs(base), bb/base)
			check(allocs == 0, "closed success 0 allocs at -cpu %d: %g", p, allocs)
		}
		if gb, _, ok := med(key{"ClosedSuccess", p, "gobreaker"}); ok && ok1 {
			check(gb >= 20*bb, "≥ 20× faster than gobreaker v2 on closed success at -cpu %d: %.1f×", p, gb/bb)
		}
		if fs, _, ok := med(key{"ClosedSuccess", p, "failsafe"}); ok && ok1 {
			check(fs >= 20*bb, "≥ 20× faster than failsafe-go on closed success at -cpu %d: %.1f×", p, fs/bb)
		}
		if rej, allocs, ok := med(key{"RejectOpen", p, "breakerbox"}); ok {
			check(rej < 10 && allocs == 0, "rejection a few ns, 0 allocs at -cpu %d: %s, %g allocs", p, fmtNs(rej), allocs)
		}
		if _, allocs, ok := med(key{"FailureUnderThreshold", p, "breakerbox"}); ok {
			check(allocs == 0, "counted failure under the threshold 0 allocs at -cpu %d: %g", p, allocs)
		}
		if ns, allocs, ok := med(key{"RegistryGet", p, "breakerbox"}); ok {
			check(ns < 100 && allocs == 0, "registry Get of an existing key tens of ns at most, 0 allocs at -cpu %d: %s, %g allocs", p, fmtNs(ns), allocs)
		}
	}
	// The baseline shares nothing, so its own parallel/serial ratio shows
	// what the machine allowed (on a shared VM the second CPU may be busy).
	for _, s := range []string{"ClosedSuccess", "RejectOpen"} {
		serial, _, ok1 := med(key{s, 1, "breakerbox"})
		par, _, ok2 := med(key{s + "Parallel", 2, "breakerbox"})
		bs, _, ok3 := med(key{s, 1, "baseline"})
		bp, _, ok4 := med(key{s + "Parallel", 2, "baseline"})
		if ok1 && ok2 {
			control := ""
			if ok3 && ok4 {
				control = fmt.Sprintf(" (baseline, for scale: %s vs %s)", fmtNs(bp), fmtNs(bs))
			}
			check(par <= serial, "%s, RunParallel at -cpu 2 no worse than serial at -cpu 1: %s vs %s%s", s, fmtNs(par), fmtNs(serial), control)
		}
	}
}

// parse reads a line such as
// "BenchmarkClosedSuccess/lib=breakerbox-2  1000000  3.1 ns/op  0 B/op  0 allocs/op".
func parse(line string) (k key, ns, allocs float64, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
		return k, 0, 0, false
	}
	name := strings.TrimPrefix(fields[0], "Benchmark")
	k.procs = 1
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		if n, err := strconv.Atoi(name[i+1:]); err == nil {
			k.procs, name = n, name[:i]
		}
	}
	scenario, lib, found := strings.Cut(name, "/lib=")
	if !found {
		return k, 0, 0, false
	}
	k.scenario, k.lib = scenario, lib
	ns, allocs = -1, 0
	for i := 2; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			continue
		}
		switch fields[i+1] {
		case "ns/op":
			ns = v
		case "allocs/op":
			allocs = v
		}
	}
	return k, ns, allocs, ns >= 0
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func fmtNs(ns float64) string {
	switch {
	case ns < 10:
		return fmt.Sprintf("%.2f ns", ns)
	case ns < 1000:
		return fmt.Sprintf("%.1f ns", ns)
	default:
		return fmt.Sprintf("%.2f µs", ns/1000)
	}
}
