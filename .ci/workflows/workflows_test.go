// Package workflows checks .github/workflows with actionlint. It is a module
// of its own: actionlint v1.7.12 is built against go.yaml.in/yaml/v4
// v4.0.0-rc.3, whose API rc.4 (required by compose-go in the main module)
// changed, so the two cannot share one build list. .ci/run runs it:
//
//	cd .ci/workflows && go test ./...
package workflows

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

// The GitHub Actions workflows cannot run here (no Docker, no GitHub). This
// file holds them to what can be checked: actionlint finds nothing (syntax,
// expressions, action inputs, job needs), they run on pull requests, every
// command they run that a reader would type is the one the README shows in a
// fenced block (and the README's e2e commands are run by a workflow), and the
// Envoy they test against is the version the webhook injects.

// root is the repository, seen from .ci/workflows.
var root = filepath.Join("..", "..")

// workflowsDir is the repository's .github/workflows.
var workflowsDir = filepath.Join(root, ".github", "workflows")

// documents are the READMEs whose fenced commands the workflows must use.
var documents = []string{filepath.Join(root, "README.md"), filepath.Join(root, "k8s", "README.md")}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// injectedEnvoyImage is inject.DefaultEnvoyImage, read from its source (this
// module cannot import the main one, see the package doc).
func injectedEnvoyImage(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`DefaultEnvoyImage = "([^"]+)"`).FindSubmatch(mustRead(t, filepath.Join(root, "k8s", "inject", "options.go")))
	if m == nil {
		t.Fatal("k8s/inject/options.go: DefaultEnvoyImage not found")
	}
	return string(m[1])
}

// documentedPrefixes pick the workflow command lines a README must show:
// the ones a user runs to reproduce CI.
var documentedPrefixes = []string{"go test ", "bash .ci/run", "docker create ", "ENVOY_BIN="}

func workflowFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(workflowsDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("workflows %q: want ci.yaml and e2e.yaml", files)
	}
	return files
}

func TestWorkflowsPassActionlint(t *testing.T) {
	for _, path := range workflowFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			errs, err := l.Lint(path, mustRead(t, path), nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range errs {
				t.Errorf("%s:%d:%d: %s [%s]", path, e.Line, e.Column, e.Message, e.Kind)
			}
		})
	}
}

// workflowCommand is one line of a run: step and the workflow's env.
type workflowCommand struct {
	file, line string
}

// parseWorkflow parses a workflow with actionlint's parser.
func parseWorkflow(t *testing.T, path string) *actionlint.Workflow {
	t.Helper()
	w, errs := actionlint.Parse(mustRead(t, path))
	for _, e := range errs {
		t.Errorf("%s: %s", path, e.Message)
	}
	if w == nil {
		t.Fatalf("%s: not parsed", path)
	}
	return w
}

// workflowEnv is a workflow's top-level env.
func workflowEnv(w *actionlint.Workflow) map[string]string {
	env := map[string]string{}
	if w.Env != nil {
		for _, v := range w.Env.Vars {
			env[v.Name.Value] = v.Value.Value
		}
	}
	return env
}

// runLines returns every line of every run: step, with the workflow's env
// variables written out and a trailing `2>&1 | tee FILE` (CI keeps a log to
// look for skips) cut.
func runLines(t *testing.T, path string) []workflowCommand {
	t.Helper()
	w := parseWorkflow(t, path)
	env := workflowEnv(w)
	tee := regexp.MustCompile(`\s*2>&1 \| tee \S+$`)
	var out []workflowCommand
	for _, job := range w.Jobs {
		for _, s := range job.Steps {
			run, ok := s.Exec.(*actionlint.ExecRun)
			if !ok || run.Run == nil {
				continue
			}
			for _, line := range strings.Split(run.Run.Value, "\n") {
				for k, v := range env {
					line = strings.ReplaceAll(line, `"${`+k+`}"`, v)
					line = strings.ReplaceAll(line, `${`+k+`}`, v)
				}
				line = tee.ReplaceAllString(strings.TrimSpace(line), "")
				if line != "" {
					out = append(out, workflowCommand{file: filepath.Base(path), line: line})
				}
			}
		}
	}
	return out
}

// fencedCommands returns every command line of the documents' fenced code
// blocks, comments after the command cut and spaces collapsed.
func fencedCommands(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, doc := range documents {
		sc := bufio.NewScanner(bytes.NewReader(mustRead(t, doc)))
		in := false
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if strings.HasPrefix(line, "```") {
				in = !in
				continue
			}
			if !in {
				continue
			}
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			if line = strings.Join(strings.Fields(line), " "); line != "" {
				out = append(out, line)
			}
		}
	}
	return out
}

func TestWorkflowsRunWhatTheREADMEDocuments(t *testing.T) {
	documented := fencedCommands(t)
	var run []string
	for _, path := range workflowFiles(t) {
		for _, c := range runLines(t, path) {
			line := strings.Join(strings.Fields(c.line), " ")
			run = append(run, line)
			if !slices.ContainsFunc(documentedPrefixes, func(p string) bool { return strings.HasPrefix(line, p) }) {
				continue
			}
			if !slices.Contains(documented, line) {
				t.Errorf("%s runs %q, which no fenced block of %q shows", c.file, line, documents)
			}
		}
	}
	// The other direction: the README's commands for CI's extra runs are
	// what the workflows run.
	for _, want := range []string{"bash .ci/run", "go test -tags e2e ./e2e/kind/ -v -timeout 20m"} {
		if !slices.Contains(documented, want) {
			t.Errorf("no README shows %q", want)
		}
		if !slices.Contains(run, want) {
			t.Errorf("no workflow runs %q", want)
		}
	}
	for _, d := range documented {
		if strings.HasPrefix(d, "ENVOY_BIN=") && !slices.Contains(run, d) {
			t.Errorf("the README's Envoy journey command %q is run by no workflow", d)
		}
	}
}

func TestWorkflowsRunOnPullRequests(t *testing.T) {
	for _, path := range workflowFiles(t) {
		w := parseWorkflow(t, path)
		if !slices.ContainsFunc(w.On, func(e actionlint.Event) bool { return e.EventName() == "pull_request" }) {
			t.Errorf("%s: not run on pull_request", path)
		}
	}
}

// TestE2EWorkflowEnvoyIsTheInjectedOne: the journeys test the Envoy release
// the webhook puts beside apps.
func TestE2EWorkflowEnvoyIsTheInjectedOne(t *testing.T) {
	env := workflowEnv(parseWorkflow(t, filepath.Join(workflowsDir, "e2e.yaml")))
	img := env["ENVOY_IMAGE"]
	_, version, _ := strings.Cut(img, ":")
	injectedImage := injectedEnvoyImage(t)
	_, injected, _ := strings.Cut(injectedImage, ":")
	if version == "" || strings.TrimPrefix(injected, "distroless-") != version {
		t.Errorf("e2e.yaml tests Envoy %q, the webhook injects %q", img, injectedImage)
	}
	if _, err := os.Stat(filepath.Join(root, "e2e", "kind", "kind_test.go")); err != nil {
		t.Errorf("the kind test the workflow runs: %v", err)
	}
}
