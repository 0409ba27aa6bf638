package redisstate_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/breakerbox/breakerbox/breaker"
	"github.com/breakerbox/breakerbox/internal/redistest"
	"github.com/breakerbox/breakerbox/internal/syncbuf"
	"github.com/breakerbox/breakerbox/redisstate"
)

// v0Commit is the last commit before wire versions: its replicas publish
// and read v0 only.
const v0Commit = "c72aaa2"

// A rolling deploy runs old and new replicas side by side: an old replica
// (the real code of v0Commit, built from git and run as its own process) and
// a new one on one real redis-server are one breaker. Failures on either
// count towards opening both, the fleet lets one probe through from the two
// together, a probe's success on either closes both, and an operator's action
// on either applies to both.
func TestAnOldAndANewReplicaShareOneFleet(t *testing.T) {
	srv := redistest.Start(t)
	old := startOldReplica(t, srv, 4, time.Second)
	cfg := breaker.Config{FailureThreshold: 4, OpenTimeout: time.Second, HalfOpenSuccesses: 1, HalfOpenProbes: 1, ProbeTimeout: time.Minute}
	// A loaded machine must not make a probe's lease time out: the replica
	// would then decide alone, and let its probe through.
	nu := newReplica(t, srv, "new", cfg, redisstate.Options{Timeout: 2 * time.Second})
	nb := nu.b()
	defer func() {
		if t.Failed() {
			t.Logf("old replica's log:\n%s", old.log.String())
			dumpLogs(t, fleet{nu})
		}
	}()
	// Both know the breaker before traffic starts: the old one made it at
	// start; the new one has read the fleet's state once it answers.
	if err := nu.f.Joined(context.Background()); err != nil {
		t.Fatal(err)
	}

	old.do("fail 2")
	nu.fail(2)
	old.wait(t, "the mixed streak of 4 opens the old replica", "open", "half_open")
	eventually(t, 10*time.Second, func() bool { return opened(nu) }, "the mixed streak of 4 opens the new replica")

	bothHalfOpen(t, old, nb)
	eventually(t, 10*time.Second, func() bool { return old.do("probe") == "granted" }, "the old replica gets the fleet's probe")
	if _, err := nb.Allow(); !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("the new replica's probe while the old one holds the fleet's only one: err = %v, want ErrOpen", err)
	}
	old.do("done success")
	old.wait(t, "the old replica's probe closes it", "closed")
	eventually(t, 10*time.Second, func() bool { return nb.State() == breaker.Closed }, "the old replica's probe closes the new one")
	if last := nb.Snapshot().LastTransition; last.Reason != breaker.ReasonFleet || last.DecidedBy != "" {
		t.Fatalf("the old replica's CLOSED on the new one: %+v, want the fleet's, its decider not known (v1 without \"by\")", last)
	}

	nu.fail(4)
	old.wait(t, "the new replica's failures open the old one", "open", "half_open")
	bothHalfOpen(t, old, nb)
	var probe breaker.Ticket
	eventually(t, 10*time.Second, func() bool {
		var err error
		probe, err = nb.Allow()
		return err == nil
	}, "the new replica gets the fleet's probe")
	if got := old.do("probe"); got != "denied" {
		t.Fatalf("the old replica's probe while the new one holds the fleet's only one: %s, want denied", got)
	}
	probe.Done(nil)
	eventually(t, 10*time.Second, func() bool { return nb.State() == breaker.Closed }, "the new replica's probe closes it")
	if last := nb.Snapshot().LastTransition; last.Reason != breaker.ReasonFleet || last.DecidedBy != "new" {
		t.Fatalf("the new replica's CLOSED: %+v, want the fleet's, decided by itself (it waits for the fleet's count)", last)
	}
	old.wait(t, "the new replica's probe closes the old one", "closed")

	old.do("force-open")
	eventually(t, 10*time.Second, func() bool { return nb.State() == breaker.ForcedOpen }, "the old replica's ForceOpen reaches the new one")
	nb.Reset()
	old.wait(t, "the new replica's Reset reaches the old one", "closed")

	if s := nu.f.Stats(); s.Malformed != 0 {
		t.Fatalf("the new replica: %+v, want every message of the old one read", s)
	}
	if strings.Contains(old.log.String(), "ignoring") {
		t.Fatalf("the old replica ignored messages of the new one:\n%s", old.log.String())
	}
}

func opened(r *replica) bool {
	for _, tr := range r.transitions() {
		if tr.To == breaker.Open {
			return true
		}
	}
	return false
}

func bothHalfOpen(t *testing.T, old *oldReplica, nb *breaker.Breaker) {
	t.Helper()
	old.wait(t, "the old replica half-opens", "half_open")
	eventually(t, 10*time.Second, func() bool { return nb.State() == breaker.HalfOpen }, "the new replica half-opens")
}

// oldReplica is a replica of v0Commit in its own process (testdata/oldreplica).
type oldReplica struct {
	t     *testing.T
	in    io.Writer
	lines chan string
	log   *syncbuf.Buffer
}

// startOldReplica builds testdata/oldreplica in v0Commit's tree, taken
// from the repository's history (no network: modules come from the local
// module cache, as for every other test), and starts it on srv.
func startOldReplica(t *testing.T, srv *redistest.Server, threshold int, open time.Duration) *oldReplica {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err == nil {
		err = exec.Command("git", "cat-file", "-e", v0Commit+"^{commit}").Run()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("commit %s is not in this checkout (%v): CI needs the repository's history (no shallow clone)", v0Commit, err)
		}
		t.Skipf("commit %s is not in this checkout (%v): the old replica cannot be built", v0Commit, err)
	}
	tree := t.TempDir()
	archive := exec.Command("sh", "-c", `git -C "$1" archive --format=tar "$2" go.mod breaker internal redisstate | tar -x -C "$3"`,
		"sh", strings.TrimSpace(string(top)), v0Commit, tree)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", v0Commit, err, out)
	}
	src, err := os.ReadFile(filepath.Join("testdata", "oldreplica", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tree, "redisstate", "oldreplica")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tree, "oldreplica.bin")
	build := exec.Command("go", "build", "-o", bin, "./oldreplica")
	build.Dir = filepath.Join(tree, "redisstate")
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOTOOLCHAIN=local")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the old replica in %s's tree: %v\n%s", v0Commit, err, out)
	}

	o := &oldReplica{t: t, lines: make(chan string), log: &syncbuf.Buffer{}}
	cmd := exec.Command(bin, "-url", srv.URL(), "-replica", "old", "-breaker", key,
		"-threshold", strconv.Itoa(threshold), "-open", open.String(), "-timeout", "2s")
	cmd.Stderr = o.log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	o.in = stdin
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			o.lines <- sc.Text()
		}
		close(o.lines)
	}()
	if got := o.do("joined"); got != "ok" {
		t.Fatalf("the old replica does not join the fleet: %s\n%s", got, o.log.String())
	}
	return o
}

// do sends one command and returns its answer.
func (o *oldReplica) do(cmd string) string {
	o.t.Helper()
	if _, err := io.WriteString(o.in, cmd+"\n"); err != nil {
		o.t.Fatalf("old replica: %s: %v\n%s", cmd, err, o.log.String())
	}
	select {
	case line, ok := <-o.lines:
		if !ok {
			o.t.Fatalf("old replica exited at %q:\n%s", cmd, o.log.String())
		}
		return line
	case <-time.After(30 * time.Second): // a deadlock guard
		o.t.Fatalf("old replica: no answer to %q", cmd)
		return ""
	}
}

// wait polls the old replica's state until it is one of states.
func (o *oldReplica) wait(t *testing.T, what string, states ...string) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool {
		st := o.do("state")
		for _, s := range states {
			if st == s {
				return true
			}
		}
		return false
	}, what)
}
