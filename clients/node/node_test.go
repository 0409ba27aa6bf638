package node

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNodeClient installs the client's development dependencies from the
// committed lockfile (npm ci, only when node_modules is missing or older
// than package-lock.json), builds it, and runs its tests (npm test). It is
// skipped when node or npm is missing, unless CI is set: then it fails.
func TestNodeClient(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the Node client's tests start the sidecar and RabbitMQ")
	}
	for _, bin := range []string{"node", "npm", "go"} {
		if _, err := exec.LookPath(bin); err != nil {
			switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
			case "", "false", "0":
				t.Skipf("%s not found: install Node.js ≥ 20 and npm (apt-get install npm) to run the Node client's tests", bin)
			}
			t.Fatalf("%s not found, and CI is set: install Node.js ≥ 20 and npm (apt-get install npm)", bin)
		}
	}
	if stale("node_modules/.package-lock.json", "package-lock.json") {
		npm(t, "ci", "--no-audit", "--no-fund")
	}
	npm(t, "run", "build")
	out := npm(t, "test")
	// node's test runner ends with its counts: show them.
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# ") && !strings.HasPrefix(line, "# Subtest") {
			t.Log(strings.TrimPrefix(line, "# "))
		}
	}
}

// stale reports whether file is missing or older than than.
func stale(file, than string) bool {
	a, err := os.Stat(file)
	if err != nil {
		return true
	}
	b, err := os.Stat(than)
	return err != nil || a.ModTime().Before(b.ModTime())
}

func npm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("npm", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("npm %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}
