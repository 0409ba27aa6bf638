package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/breakerbox/breakerbox/cmd/breakerbox/internal/config"
)

// dockerfile is the repository's Dockerfile as instructions: continuation
// lines joined, comments dropped.
func dockerfile(t *testing.T) [][2]string {
	t.Helper()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cur string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		cur += strings.TrimSpace(strings.TrimSuffix(line, "\\")) + " "
		if strings.HasSuffix(line, "\\") {
			continue
		}
		if f := strings.Fields(cur); len(f) > 0 {
			out = append(out, [2]string{strings.ToUpper(f[0]), strings.Join(f[1:], " ")})
		}
		cur = ""
	}
	return out
}

// TestDockerfileBuildsWithTheCIScript checks the Dockerfile's structure (no
// Docker daemon runs in CI): a Go build stage of the module's Go version that
// runs .ci/build.sh, the script CI runs, and a final stage on a pinned
// distroless/static base (CA certificates, no shell) that runs the binary as
// a non-root user.
func TestDockerfileBuildsWithTheCIScript(t *testing.T) {
	gomod, _ := os.ReadFile("go.mod")
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go line")
	}
	var stages [][][2]string
	for _, in := range dockerfile(t) {
		if in[0] == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if in[0] != "ARG" {
				t.Fatalf("%s before the first FROM", in[0])
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a build stage and the image", len(stages))
	}
	build, image := stages[0], stages[1]
	if want := "golang:" + string(goLine[1]) + "-"; !strings.HasPrefix(build[0][1], want) || !strings.HasSuffix(build[0][1], " AS build") {
		t.Errorf("build stage FROM %s: want %s… AS build (cmd/breakerbox/go.mod says go %s)", build[0][1], want, goLine[1])
	}
	ranScript := false
	for _, in := range build {
		ranScript = ranScript || in[0] == "RUN" && strings.Contains(in[1], "bash .ci/build.sh /out/breakerbox")
	}
	if !ranScript {
		t.Error("the build stage does not RUN bash .ci/build.sh /out/breakerbox, the command CI runs")
	}
	ciRun, _ := os.ReadFile("../../.ci/run")
	if !strings.Contains(string(ciRun), "bash .ci/build.sh") {
		t.Error(".ci/run does not run .ci/build.sh")
	}

	if base := image[0][1]; !regexp.MustCompile(`^gcr\.io/distroless/static-debian\d+:nonroot$`).MatchString(base) {
		t.Errorf("image FROM %s: want distroless/static (CA certificates, a nonroot user) at a pinned Debian release", base)
	}
	got := map[string]string{}
	for _, in := range image {
		got[in[0]] += in[1] + ";"
	}
	for key, want := range map[string]string{
		"COPY":       "--from=build /out/breakerbox /usr/local/bin/breakerbox;",
		"USER":       "nonroot:nonroot;",
		"ENTRYPOINT": `["/usr/local/bin/breakerbox"];`,
		"CMD":        `["serve"];`,
		"ENV":        "BREAKERBOX_LISTEN=0.0.0.0:7070 BREAKERBOX_ADMIN=0.0.0.0:7071;",
		"EXPOSE":     "7070 7071;",
	} {
		if got[key] != want {
			t.Errorf("image %s %q, want %q", key, got[key], want)
		}
	}
}

// TestKubernetesConfigMapIsAValidConfig: the breakerbox.yaml the Kubernetes
// example mounts passes breakerbox's own validation, warning-free.
func TestKubernetesConfigMapIsAValidConfig(t *testing.T) {
	data, err := os.ReadFile("../../deploy/kubernetes/breakerbox-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil || cm.Kind != "ConfigMap" {
		t.Fatalf("not a ConfigMap: %v", err)
	}
	// As in the pod: listen and admin from the environment, the token from the Secret.
	t.Setenv("BREAKERBOX_LISTEN", "127.0.0.1:7070")
	t.Setenv("BREAKERBOX_ADMIN", "0.0.0.0:7071")
	t.Setenv("BREAKERBOX_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef")
	cfg, err := config.Parse("breakerbox-config.yaml: data.breakerbox.yaml", []byte(cm.Data["breakerbox.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) > 0 || !strings.HasPrefix(cfg.State, "redis://breakerbox-redis:") {
		t.Fatalf("warnings %q, state %s", cfg.Warnings, cfg.State)
	}
}

// TestSystemdUnitRunsTheBinaryHardened checks the unit's essentials;
// .ci/run also runs systemd-analyze verify on it where systemd is installed.
func TestSystemdUnitRunsTheBinaryHardened(t *testing.T) {
	data, err := os.ReadFile("../../deploy/systemd/breakerbox.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	for _, want := range []string{
		"\nExecStart=/usr/local/bin/breakerbox serve --config /etc/breakerbox/breakerbox.yaml",
		"\nExecReload=/bin/kill -HUP $MAINPID", // SIGHUP reloads the config
		"\nDynamicUser=yes", "\nNoNewPrivileges=yes", "\nProtectSystem=strict", "\nCapabilityBoundingSet=\n",
		"\nSystemCallErrorNumber=EPERM", // Go's runtime must never be killed by the filter
		"\nWantedBy=multi-user.target",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
}
