package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
)

// Build information set with -ldflags (the Dockerfile does, since a container
// build has no .git): -X main.version=v1.2.3 -X main.commit=abc123
// -X main.date=2026-11-28. Unset, version reads what the Go toolchain
// recorded: the module version of `go install …@v1.2.3`, and the VCS
// revision, time and modified flag of a `go build` in a checkout.
var (
	version = ""
	commit  = ""
	date    = ""
)

func versionCmd(context.Context, []string) int {
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprint(os.Stdout, versionText(bi, version, commit, date))
	return 0
}

// versionText renders the version: ldflags values win over build info; bi
// may be nil (a binary built without module support).
func versionText(bi *debug.BuildInfo, ldVersion, ldCommit, ldDate string) string {
	ver, rev, committed, modified, goVersion, tags := ldVersion, ldCommit, "", false, "", ""
	if bi != nil {
		goVersion = bi.GoVersion
		if ver == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			ver = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.time":
				if ldCommit == "" {
					committed = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true" && ldCommit == ""
			case "-tags":
				tags = s.Value // vtprotobuf: answers marshalled by generated code
			}
		}
	}
	if ver == "" {
		ver = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tokentailor %s\n", ver)
	var details []string
	if rev != "" {
		c := "commit " + rev
		if modified {
			c += " (modified)"
		}
		details = append(details, c)
	}
	if committed != "" {
		details = append(details, "committed "+committed)
	}
	if ldDate != "" {
		details = append(details, "built "+ldDate)
	}
	if goVersion != "" {
		details = append(details, goVersion)
	}
	if tags != "" {
		details = append(details, "tags "+tags)
	}
	if len(details) > 0 {
		fmt.Fprintf(&b, "%s\n", strings.Join(details, ", "))
	}
	return b.String()
}
