package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/proxy"
)

func statusCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("status", stdout)
	admin := fs.String("admin", "127.0.0.1:7071", "the admin listener's address")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*admin+"/api/circuits", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("status: is breakerbox running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: %s answered %s", *admin, resp.Status)
	}
	var circuits []proxy.Circuit
	if err := json.NewDecoder(resp.Body).Decode(&circuits); err != nil {
		return fmt.Errorf("status: reading /api/circuits: %w", err)
	}
	return printStatus(stdout, circuits)
}

func printStatus(w io.Writer, circuits []proxy.Circuit) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CIRCUIT\tSTATE\tFAILS\tOK\tFAILED\tIGNORED\tREJECTED\tPROBE IN\tLAST TRANSITION")
	for _, c := range circuits {
		probe, last := "-", "-"
		if c.RetryAfterSeconds > 0 {
			probe = fmt.Sprintf("%.0fs", c.RetryAfterSeconds)
		}
		if t := c.LastTransition; t != nil {
			last = fmt.Sprintf("%s→%s (%s) %s ago", t.From, t.To, t.Reason, time.Since(t.At).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%s\t%s\n", c.Name, c.State, c.ConsecutiveFailures, c.Settings.FailureThreshold,
			c.Counts["success"], c.Counts["failure"], c.Counts["ignored"], c.Rejected+c.RejectedHalfOpen, probe, last)
	}
	return tw.Flush()
}
