package response

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tokentailor/tokentailor/extauthz"
)

// readmeRow is one line of the README's outcome table.
type readmeRow struct {
	line      int
	reason    string
	status    int
	challenge string
}

// readmeOutcomes parses the table under the header "| outcome | `reason` |"
// of the README.
func readmeOutcomes(t *testing.T, path string) []readmeRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open README: %v", err)
	}
	defer f.Close()
	var out []readmeRow
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "| outcome | `reason` | status |") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		if strings.HasPrefix(line, "|---") {
			continue
		}
		cells := splitRow(line)
		if len(cells) != 4 {
			t.Fatalf("README:%d: want 4 cells, got %d: %q", n, len(cells), line)
		}
		status, err := strconv.Atoi(cells[2])
		if err != nil {
			t.Fatalf("README:%d: status %q: %v", n, cells[2], err)
		}
		out = append(out, readmeRow{line: n, reason: strings.Trim(cells[1], "`"), status: status, challenge: cells[3]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("README: no outcome table (a line starting \"| outcome | `reason` | status |\")")
	}
	return out
}

// splitRow splits a Markdown table row at '|' that are not escaped or
// inside a code span.
func splitRow(line string) []string {
	var cells []string
	var cur strings.Builder
	code := false
	for i := 1; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			cur.WriteByte(c)
			cur.WriteByte(line[i+1])
			i++
		case c == '`':
			code = !code
			cur.WriteByte(c)
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return cells
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// readmeChallenge renders a Denial the way the README's last column shows
// it: "—" without a challenge, `Bearer realm="…"` for a challenge without an
// error code, else the error (and scope) parameters, values of realm and
// scope elided. It reads d.Challenge itself, so any change to what the
// table sends shows up here.
func readmeChallenge(d Denial) string {
	if d.Challenge == "" {
		return "—"
	}
	var parts []string
	for _, m := range challengeParam.FindAllStringSubmatch(d.Challenge, -1) {
		switch m[1] {
		case "error":
			parts = append(parts, fmt.Sprintf("error=%q", m[2]))
		case "scope":
			parts = append(parts, `scope="…"`)
		}
	}
	if len(parts) == 0 {
		return "`Bearer realm=\"…\"`"
	}
	return "`" + strings.Join(parts, ", ") + "`"
}

// TestREADMEOutcomeTableMatchesTheCode holds the README's outcome table to
// the response table: every reason label appears exactly once, with the
// status and WWW-Authenticate the code sends (a note in parentheses may
// follow the challenge).
func TestREADMEOutcomeTableMatchesTheCode(t *testing.T) {
	got := readmeOutcomes(t, "../../README.md")
	seen := map[string]int{}
	for _, r := range got {
		if prev, dup := seen[r.reason]; dup {
			t.Errorf("README:%d: reason %q already on line %d", r.line, r.reason, prev)
		}
		seen[r.reason] = r.line
	}
	for i, row := range rows {
		err := row.err
		if errors.Is(err, extauthz.ErrInsufficientScope) {
			err = &extauthz.ScopeError{Required: []string{"orders:read"}}
		}
		d := Classify(fmt.Errorf("test: %w", err))
		if d.Reason != row.reason {
			t.Fatalf("rows[%d]: Classify gives %q, want %q", i, d.Reason, row.reason)
		}
		line, ok := seen[row.reason]
		if !ok {
			t.Errorf("README outcome table: no row for reason %q (%d, %s)", row.reason, d.Status, readmeChallenge(d))
			continue
		}
		delete(seen, row.reason)
		var r readmeRow
		for _, x := range got {
			if x.line == line {
				r = x
			}
		}
		if r.status != d.Status {
			t.Errorf("README:%d: %s: status %d, code sends %d", line, row.reason, r.status, d.Status)
		}
		want := readmeChallenge(d)
		if r.challenge != want && !strings.HasPrefix(r.challenge, want+" (") {
			t.Errorf("README:%d: %s: WWW-Authenticate %s, code sends %s", line, row.reason, r.challenge, want)
		}
	}
	for reason, line := range seen {
		t.Errorf("README:%d: reason %q is not in the response table", line, reason)
	}
}

// TestReadmeChallenge pins the renderer the README test relies on, so a
// renderer that accepts anything cannot pass it.
func TestReadmeChallenge(t *testing.T) {
	tests := []struct {
		name string
		d    Denial
		want string
	}{
		{name: "none", d: Denial{}, want: "—"},
		{name: "realm only", d: Denial{Challenge: `Bearer realm="x"`}, want: "`Bearer realm=\"…\"`"},
		{name: "error", d: Denial{Challenge: `Bearer realm="x", error="invalid_token", error_description="d"`}, want: "`error=\"invalid_token\"`"},
		{name: "scope", d: Denial{Challenge: `Bearer error="insufficient_scope", error_description="d", scope="a b"`}, want: "`error=\"insufficient_scope\", scope=\"…\"`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := readmeChallenge(tt.d); got != tt.want {
				t.Errorf("readmeChallenge = %s, want %s", got, tt.want)
			}
		})
	}
}
