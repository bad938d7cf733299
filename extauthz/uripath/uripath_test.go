package uripath

import (
	"strings"
	"testing"
)

func TestRemoveDotSegments(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "no dots", in: "/a/b", want: "/a/b"},
		{name: "dot", in: "/a/./b", want: "/a/b"},
		{name: "dot-dot", in: "/a/b/../c", want: "/a/c"},
		{name: "above the root", in: "/../../a", want: "/a"},
		{name: "trailing dot-dot keeps the slash", in: "/a/b/..", want: "/a/"},
		{name: "trailing dot keeps the slash", in: "/a/.", want: "/a/"},
		{name: "dots inside a segment stay", in: "/a/..b/c.", want: "/a/..b/c."},
		{name: "empty segments stay", in: "//a/../b", want: "//b"},
		{name: "relative", in: "a/./b", want: "/a/b"},
		{name: "relative without dots", in: "a", want: "/a"},
		{name: "empty", in: "", want: "/"},
		{name: "root", in: "/", want: "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RemoveDotSegments(tt.in); got != tt.want {
				t.Errorf("RemoveDotSegments(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzRemoveDotSegments: any input gives an absolute path without a "." or
// ".." segment, and removing again changes nothing.
func FuzzRemoveDotSegments(f *testing.F) {
	for _, s := range []string{"/a/./b/../c", "/../..", "a/..", "", "//./..//"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := RemoveDotSegments(p)
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("%q -> %q: not absolute", p, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q: dot segment left", p, got)
			}
		}
		if again := RemoveDotSegments(got); again != got {
			t.Fatalf("%q -> %q -> %q: not idempotent", p, got, again)
		}
	})
}
