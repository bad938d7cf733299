package main

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionText(t *testing.T) {
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-11-28T08:23:45Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	tests := []struct {
		name   string
		bi     *debug.BuildInfo
		ld     [3]string // version, commit, date from -ldflags
		want   string
		absent string
	}{
		{
			name: "go build in a checkout",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			want: "tokentailor (devel)\ncommit 0123456789abcdef0123456789abcdef01234567 (modified), committed 2026-11-28T08:23:45Z, go1.26.8\n",
		},
		{
			name: "go install at a version",
			bi:   &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}},
			want: "tokentailor v1.4.0\ngo1.26.8\n",
		},
		{
			name:   "ldflags win over build info",
			bi:     &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs},
			ld:     [3]string{"v2.0.0", "abc123", "2026-12-01"},
			want:   "tokentailor v2.0.0\ncommit abc123, built 2026-12-01, go1.26.8\n",
			absent: "modified",
		},
		{
			name: "release build with tags",
			bi: &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
				Settings: []debug.BuildSetting{{Key: "-tags", Value: "vtprotobuf"}}},
			ld:   [3]string{"v2.0.0", "abc123", ""},
			want: "tokentailor v2.0.0\ncommit abc123, go1.26.8, tags vtprotobuf\n",
		},
		{
			name: "no build info",
			want: "tokentailor (devel)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := versionText(tt.bi, tt.ld[0], tt.ld[1], tt.ld[2])
			if got != tt.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestVersionFlags(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		if code, out := capture(t, arg); code != 0 || !strings.HasPrefix(out, "tokentailor ") {
			t.Errorf("%s: exit %d, output %q", arg, code, out)
		}
	}
}

// TestBuiltBinaryShowsCommit builds the command as a user would and checks
// that `version` shows the commit the toolchain recorded.
func TestBuiltBinaryShowsCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: the Go toolchain records no commit without it")
	}
	bin := filepath.Join(t.TempDir(), "tokentailor")
	// -buildvcs=true: a GOFLAGS=-buildvcs=false in the environment must not hide the check.
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var rev string
	for _, line := range strings.Split(string(info), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "build\tvcs.revision="); ok {
			rev = v
		}
	}
	if rev == "" {
		// cmd/go finds a repository by its .git directory: a linked
		// worktree (.git is a file) or an exported tree records nothing.
		t.Skip("the toolchain recorded no VCS revision for this tree (not a git clone, or a linked worktree)")
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.Contains(string(out), "commit "+rev) {
		t.Fatalf("--version: %v %q, want commit %s", err, out, rev)
	}
}
