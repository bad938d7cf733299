package extauthz

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestInvariantCitationsPointToTheREADME checks that the project's invariants
// live in the repository (README, "Security model", numbered) and that every
// Go file citing "invariant N" cites one of them, not a note kept elsewhere.
func TestInvariantCitationsPointToTheREADME(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, model, ok := strings.Cut(string(readme), "\n## Security model\n")
	if !ok {
		t.Fatal(`README has no "## Security model" section`)
	}
	model, _, _ = strings.Cut(model, "\n## ")
	numbered := regexp.MustCompile(`(?m)^(\d+)\. \*\*`).FindAllStringSubmatch(model, -1)
	for i, m := range numbered {
		if m[1] != strconv.Itoa(i+1) {
			t.Fatalf("Security model item %d is numbered %s", i+1, m[1])
		}
	}
	if len(numbered) == 0 {
		t.Fatal("Security model lists no numbered invariants")
	}
	cite := regexp.MustCompile(`(?i)\binvariants? (\d+)`)
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(b)
		if strings.Contains(src, "DESIGN"+" invariant") { // split so this file does not match itself
			t.Errorf("%s cites the design note's invariants: cite the README's Security model", path)
		}
		for _, m := range cite.FindAllStringSubmatch(src, -1) {
			if n, _ := strconv.Atoi(m[1]); n < 1 || n > len(numbered) {
				t.Errorf("%s cites %q; the README's Security model has invariants 1–%d", path, m[0], len(numbered))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
