// Command tokentailor-load is tokentailor's load generator and its yardstick.
//
//	tokentailor-load floor -listen 127.0.0.1:9300 -listen unix:///tmp/floor.sock
//	tokentailor-load run   -target unix:///run/tokentailor/ext_authz.sock -tokens FILE -pid PID
//	tokentailor-load bench                      (from the repository root)
//	tokentailor-load flood                      (from the repository root)
//	tokentailor-load crypto -token F -pubkey F -minted F -key F
//	tokentailor-load replicas                   (from the repository root; needs redis-server)
//
// floor is a trivial ext_authz server that answers OK with one header and
// does no work: what gRPC and the transport cost by themselves. run drives
// one server with N workers over a few HTTP/2 connections for a fixed time,
// from pre-built CheckRequests, and prints requests/s, p50/p90/p99 latency
// and the server's CPU time per request (from its CPU-time clock). bench runs the
// whole comparison in one go: it builds and starts tokentailor against an
// authorization-server double served by this process, pins load generator
// and servers to separate cores with taskset, and prints every figure also as
// a ratio to the floor measured in the same run. flood floods one
// tokentailor with made-up opaque tokens while new legitimate ones arrive,
// against an issuer that takes 50 ms to introspect, and prints how many
// legitimate ones were allowed within Envoy's ext_authz timeout and how
// often the issuer was called. crypto times, in its own process, the
// cryptography a cold Check cannot avoid (bench runs it on the server's CPU
// for the cold target). See docs/performance.md.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := dispatch(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

const usage = `tokentailor-load: load generator and floor for tokentailor's ext_authz server

Usage:
  tokentailor-load floor -listen ADDR [-listen ADDR]   trivial ext_authz server (the floor)
  tokentailor-load run -target ADDR [flags]            measure one running server
  tokentailor-load bench [flags]                       floor vs tokentailor, every scenario, one table
  tokentailor-load flood [flags]                       2,000 streams of made-up opaque tokens vs new real ones
  tokentailor-load crypto -token F -pubkey F -minted F -key F
                                                       the cryptography of a cold Check alone (bench runs it)
  tokentailor-load replicas [flags]                    3 replicas, with and without shared_cache on one redis-server

ADDR is host:port or unix:///path. Run "tokentailor-load COMMAND -h" for flags.
`

func dispatch(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "floor":
		return floorCmd(ctx, args[1:])
	case "run":
		return runCmd(ctx, args[1:])
	case "bench":
		return benchCmd(ctx, args[1:])
	case "flood":
		return floodCmd(ctx, args[1:])
	case "crypto":
		return cryptoCmd(ctx, args[1:])
	case "replicas":
		return replicasCmd(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(os.Stdout, usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "tokentailor-load: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// loadFlags registers the flags every measuring command shares.
func loadFlags(fs *flag.FlagSet, o *loadOptions) {
	fs.IntVar(&o.Conns, "conns", 2, "gRPC connections")
	fs.IntVar(&o.Workers, "workers", 16, "concurrent callers, spread over the connections")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured warm-up before each run")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "measured time of each run")
}

// runCmd measures one server with tokens read from files.
func runCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var o loadOptions
	loadFlags(fs, &o)
	fs.StringVar(&o.Target, "target", "", "server address: host:port or unix:///path")
	fs.IntVar(&o.PID, "pid", 0, "server process id, to report its CPU time per request (0: not reported)")
	warmFile := fs.String("tokens", "", "file of tokens, one a line, sent again and again (empty: requests carry no token)")
	coldFile := fs.String("cold-tokens", "", "file of tokens, one a line, each sent once")
	coldEvery := fs.Uint64("cold-every", 0, "with both files: every Nth request takes a cold token (0: only when -tokens is empty)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Target == "" {
		fmt.Fprintln(os.Stderr, "run: -target is required")
		return 2
	}
	src := &source{coldEvery: *coldEvery}
	warm, err := readTokens(*warmFile)
	if err == nil {
		src.cold, err = readRequests(*coldFile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	for i, t := range warm {
		src.warm = append(src.warm, checkRequest(t, i))
	}
	if len(src.warm) == 0 && len(src.cold) == 0 {
		src.warm = []*authv3.CheckRequest{checkRequest("", 0)}
	}
	res, err := runLoad(ctx, o, src)
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	t := newTable(os.Stdout)
	t.header()
	t.row(row{name: "run", transport: transportOf(o.Target), res: res})
	return 0
}

// readTokens reads one token a line; an empty path reads nothing.
func readTokens(path string) ([]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return scanTokens(f)
}

// scanTokens returns the non-empty lines of r, trimmed.
func scanTokens(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading tokens: %w", err)
	}
	return out, nil
}

// readRequests reads tokens and builds a request for each.
func readRequests(path string) ([]*authv3.CheckRequest, error) {
	toks, err := readTokens(path)
	if err != nil {
		return nil, err
	}
	reqs := make([]*authv3.CheckRequest, len(toks))
	for i, t := range toks {
		reqs[i] = checkRequest(t, i)
	}
	return reqs, nil
}

// transportOf names the transport of a target.
func transportOf(target string) string {
	if _, ok := unixPath(target); ok {
		return "unix"
	}
	return "tcp"
}

// verdictExit is the exit status of a scenario with a verdict: 1 (and err
// on stderr, after cmd) when it could not run, 3 when it ran and its
// verdict failed, else 0.
func verdictExit(cmd string, ok bool, err error) int {
	if err != nil {
		fmt.Fprintln(os.Stderr, cmd+":", err)
		return 1
	}
	if !ok {
		return 3
	}
	return 0
}
