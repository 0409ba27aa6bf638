package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

// openCircuitsError is status --fail-if-open finding circuits open: exit 3.
type openCircuitsError struct{ names []string }

func (e openCircuitsError) Error() string {
	return fmt.Sprintf("status: %d circuits not closed: %s", len(e.names), strings.Join(e.names, ", "))
}

func statusCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("status", stdout)
	admin := fs.String("admin", "127.0.0.1:7071", "the admin listener's address")
	asJSON := fs.Bool("json", false, "print the circuits as JSON (the objects of /api/circuits)")
	states := fs.String("state", "", "show only the circuits in these states, comma-separated: closed, open, half_open, forced_open, disabled")
	watch := fs.Bool("watch", false, "print again every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch prints")
	failIfOpen := fs.Bool("fail-if-open", false, "exit 3 while a circuit shown is open, half_open or forced_open (with --watch: as soon as one is)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	show, err := stateFilter(*states)
	if err != nil {
		return err
	}
	if *interval <= 0 {
		return usageError{fmt.Sprintf("status: --interval %v: want a positive duration, e.g. 2s", *interval)}
	}
	clear := *watch && !*asJSON && isTerminal(stdout)
	for {
		circuits, err := fetchCircuits(ctx, *admin)
		switch {
		case ctx.Err() != nil: // interrupted while watching
			return nil
		case err != nil && !*watch:
			return err
		case err != nil: // the sidecar may be restarting: keep watching
			fmt.Fprintf(stdout, "%s  %v\n", time.Now().Format(time.TimeOnly), err)
		default:
			circuits = slices.DeleteFunc(circuits, func(c proxy.Circuit) bool { return show != nil && !show[c.State] })
			sortProblemsFirst(circuits)
			if clear {
				fmt.Fprint(stdout, "\033[H\033[2J")
			}
			if *watch && !*asJSON {
				fmt.Fprintf(stdout, "%s  breakerbox %s, every %v (Ctrl-C to stop)\n", time.Now().Format(time.TimeOnly), *admin, *interval)
			}
			if *asJSON {
				err = printJSON(stdout, circuits)
			} else {
				err = printStatus(stdout, circuits)
			}
			if err != nil {
				return err
			}
			if open := notClosed(circuits); *failIfOpen && len(open) > 0 {
				return openCircuitsError{open}
			}
		}
		if !*watch {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

// stateFilter parses --state: nil shows every circuit.
func stateFilter(list string) (map[string]bool, error) {
	if list == "" {
		return nil, nil
	}
	show := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if _, err := breaker.ParseState(s); err != nil {
			return nil, usageError{fmt.Sprintf("status: --state %q: want closed, open, half_open, forced_open or disabled, comma-separated", s)}
		}
		show[s] = true
	}
	return show, nil
}

func fetchCircuits(ctx context.Context, admin string) ([]proxy.Circuit, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/api/circuits", nil)
	if err != nil {
		return nil, usageError{fmt.Sprintf("status: --admin %q: want host:port, e.g. 127.0.0.1:7071", admin)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status: is breakerbox running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s answered %s", admin, resp.Status)
	}
	var circuits []proxy.Circuit
	if err := json.NewDecoder(resp.Body).Decode(&circuits); err != nil {
		return nil, fmt.Errorf("status: reading /api/circuits: %w", err)
	}
	return circuits, nil
}

// problemRank orders states for an operator: what rejects calls first.
var problemRank = map[string]int{"open": 0, "forced_open": 1, "half_open": 2, "disabled": 3, "closed": 4}

func sortProblemsFirst(circuits []proxy.Circuit) {
	slices.SortStableFunc(circuits, func(a, b proxy.Circuit) int {
		return cmp.Or(cmp.Compare(problemRank[a.State], problemRank[b.State]), strings.Compare(a.Name, b.Name))
	})
}

// notClosed names the circuits that reject calls, or let only probes through.
func notClosed(circuits []proxy.Circuit) []string {
	var names []string
	for _, c := range circuits {
		if c.State == "open" || c.State == "half_open" || c.State == "forced_open" {
			names = append(names, c.Name)
		}
	}
	return names
}

func printJSON(w io.Writer, circuits []proxy.Circuit) error {
	if circuits == nil {
		circuits = []proxy.Circuit{}
	}
	b, err := json.MarshalIndent(circuits, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printStatus prints the table. STREAK is what moves the circuit next: in
// closed, its consecutive failures against the threshold; in half_open, its
// successful probes against those needed to close. An open circuit has no
// streak (the count that opened it is in LAST TRANSITION's reason), so it
// shows none rather than a misleading 0/10.
func printStatus(w io.Writer, circuits []proxy.Circuit) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CIRCUIT\tSTATE\tSTREAK\tOK\tFAILED\tIGNORED\tREJECTED\tPROBE IN\tLAST TRANSITION")
	for _, c := range circuits {
		streak, probe, last := "-", "-", "-"
		switch c.State {
		case "closed":
			streak = fmt.Sprintf("%d/%d failed", c.ConsecutiveFailures, c.Settings.FailureThreshold)
		case "half_open":
			streak = fmt.Sprintf("%d/%d probes ok", c.ConsecutiveSuccesses, c.Settings.HalfOpenSuccesses)
		}
		if c.RetryAfterSeconds > 0 {
			probe = fmt.Sprintf("%.0fs", c.RetryAfterSeconds)
		}
		if t := c.LastTransition; t != nil {
			last = fmt.Sprintf("%s→%s (%s) %s ago", t.From, t.To, t.Reason, time.Since(t.At).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", c.Name, c.State, streak,
			c.Counts["success"], c.Counts["failure"], c.Counts["ignored"], c.Rejected+c.RejectedHalfOpen, probe, last)
	}
	return tw.Flush()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// controlCmd is open, close and reset: POST /api/circuits/CIRCUIT/ACTION
// with the admin token.
func controlCmd(ctx context.Context, action string, args []string, stdout io.Writer) error {
	fs := newFlags(action, stdout)
	admin := fs.String("admin", "127.0.0.1:7071", "the admin listener's address")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError{fmt.Sprintf("%s: want exactly one CIRCUIT (e.g. genesys/eu-west-1; `breakerbox status` lists them)", action)}
	}
	name := rest[0]
	token := os.Getenv("BREAKERBOX_ADMIN_TOKEN")
	if token == "" {
		return fmt.Errorf("%s: set BREAKERBOX_ADMIN_TOKEN to the admin token (admin_token in breakerbox's config)", action)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+*admin+"/api/circuits/"+name+"/"+action, nil)
	if err != nil {
		return usageError{fmt.Sprintf("%s: --admin %q or CIRCUIT %q: %v", action, *admin, name, err)}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: is breakerbox running? %w", action, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error    string   `json:"error"`
			Circuits []string `json:"circuits"`
		}
		json.Unmarshal(body, &e)
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return fmt.Errorf("%s: %s refused the token: BREAKERBOX_ADMIN_TOKEN must be the admin_token of its config", action, *admin)
		case e.Circuits != nil:
			return fmt.Errorf("%s: %s; circuits: %s", action, e.Error, strings.Join(e.Circuits, ", "))
		case e.Error != "":
			return fmt.Errorf("%s: %s", action, e.Error)
		}
		return fmt.Errorf("%s: %s answered %s", action, *admin, resp.Status)
	}
	var c proxy.Circuit
	if err := json.Unmarshal(body, &c); err != nil {
		return fmt.Errorf("%s: reading the answer: %w", action, err)
	}
	fmt.Fprintf(stdout, "%s: %s\n", c.Name, c.State)
	return nil
}
