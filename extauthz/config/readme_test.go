package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfigExamplesLoad: every YAML block of the README that starts
// with "# config: <name>" is a whole config that parses and validates, so
// the examples of the sender-constrained and Txn-Token sections work as
// written.
func TestREADMEConfigExamplesLoad(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, block := range strings.Split(string(raw), "```yaml\n")[1:] {
		body, _, _ := strings.Cut(block, "```")
		name, ok := strings.CutPrefix(strings.SplitN(body, "\n", 2)[0], "# config: ")
		if !ok {
			continue
		}
		found[name] = true
		t.Run(name, func(t *testing.T) {
			c, err := Parse([]byte(body), "/etc/tokentailor")
			if err != nil {
				t.Fatalf("README example %q: %v", name, err)
			}
			if len(c.Routes) == 0 {
				t.Error("no routes")
			}
		})
	}
	for _, want := range []string{"DPoP", "certificate-bound tokens", "Txn-Tokens"} {
		if !found[want] {
			t.Errorf("README has no \"# config: %s\" example", want)
		}
	}
}
