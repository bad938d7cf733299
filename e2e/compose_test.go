package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"

	"github.com/tokentailor/tokentailor/envoy/validate"
)

// composeDir is the docker compose demo.
var composeDir = filepath.Join("..", "docs", "compose")

// loadDemo loads docs/compose/compose.yaml as docker compose would, with the
// compose-spec reference loader (schema, interpolation, normalisation, paths
// resolved), and no environment of this machine.
func loadDemo(t *testing.T) *types.Project {
	t.Helper()
	abs, err := filepath.Abs(composeDir)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(abs, "compose.yaml")},
		cli.WithWorkingDirectory(abs), cli.WithEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("compose-go refuses docs/compose/compose.yaml: %v", err)
	}
	return p
}

// devRoutes are the route names of `tokentailor dev`'s embedded config.
func devRoutes(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "cmd", "tokentailor", "dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, routes, ok := strings.Cut(string(raw), "\nroutes:\n")
	if !ok {
		t.Fatal("cmd/tokentailor/dev.yaml has no routes block")
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  - name: (\S+)$`).FindAllStringSubmatch(routes, -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatal("no route names found in cmd/tokentailor/dev.yaml")
	}
	return names
}

// The compose demo loads, its parts are wired to each other, and only
// Envoy is published, on the host's loopback.
func TestComposeDemo(t *testing.T) {
	p := loadDemo(t)
	svc := func(name string) types.ServiceConfig {
		t.Helper()
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		return s
	}
	envoySvc, tt, echo := svc("envoy"), svc("tokentailor"), svc("echo")

	tests := []struct {
		name string
		ok   bool
		why  string
	}{
		{name: "envoy runs Envoy's image", ok: strings.HasPrefix(envoySvc.Image, "envoyproxy/envoy:"), why: envoySvc.Image},
		{name: "envoy mounts the bootstrap beside compose.yaml",
			ok:  len(envoySvc.Volumes) == 1 && envoySvc.Volumes[0].Source == mustAbs(t, filepath.Join(composeDir, "envoy.yaml")) && envoySvc.Volumes[0].ReadOnly,
			why: spew(envoySvc.Volumes)},
		{name: "envoy runs that bootstrap", ok: slices.Contains(envoySvc.Command, envoySvc.Volumes[0].Target), why: strings.Join(envoySvc.Command, " ")},
		{name: "only envoy's 8080 is published, on loopback",
			ok:  len(envoySvc.Ports) == 1 && envoySvc.Ports[0].HostIP == "127.0.0.1" && envoySvc.Ports[0].Target == 8080 && len(tt.Ports) == 0 && len(echo.Ports) == 0,
			why: spew(envoySvc.Ports)},
		{name: "tokentailor is built from this repository's Dockerfile",
			ok:  tt.Build != nil && fileExists(filepath.Join(tt.Build.Context, tt.Build.Dockerfile)) && fileExists(filepath.Join(tt.Build.Context, "go.mod")),
			why: spew(tt.Build)},
		{name: "tokentailor runs dev mode on the network for Envoy", ok: len(tt.Command) > 0 && tt.Command[0] == "dev" && slices.Contains(tt.Command, "0.0.0.0:9191"),
			why: strings.Join(tt.Command, " ")},
		{name: "the echo decodes the Authorization JWT", ok: echo.Environment["JWT_HEADER"] != nil && *echo.Environment["JWT_HEADER"] == "Authorization" &&
			echo.Environment["HTTP_PORT"] != nil && *echo.Environment["HTTP_PORT"] == "8080", why: spew(echo.Environment)},
		{name: "envoy starts after its upstreams", ok: envoySvc.DependsOn["tokentailor"].Condition != "" && envoySvc.DependsOn["echo"].Condition != "", why: spew(envoySvc.DependsOn)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Errorf("not so: %s", tc.why)
			}
		})
	}
}

// The Envoy bootstrap of the demo is valid and agrees with dev mode: gRPC at
// the tokentailor service's 9191, every context_extensions route one of
// dev.yaml's routes.
func TestComposeDemoEnvoyBootstrap(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(composeDir, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	routes := devRoutes(t)
	if _, err := validate.File(raw, validate.Tokentailor{GRPC: "tokentailor:9191", Routes: routes}); err != nil {
		t.Fatalf("docs/compose/envoy.yaml: %v", err)
	}
	for _, r := range routes {
		if !strings.Contains(string(raw), "context_extensions: {route: "+r+"}") {
			t.Errorf("dev route %q is named by no Envoy route", r)
		}
	}
	p := loadDemo(t)
	echo, err := p.GetService("echo")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(echo.Expose, "8080") || !strings.Contains(string(raw), "socket_address: {address: echo, port_value: 8080}") {
		t.Errorf("the app cluster does not point at the echo service's 8080 (expose %v)", echo.Expose)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// spew renders v for a failure message.
func spew(v any) string {
	b, err := yamlMarshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func yamlMarshal(v any) ([]byte, error) { return yaml.Marshal(v) }
