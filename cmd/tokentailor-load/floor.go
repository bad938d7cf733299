package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/tokentailor/tokentailor/extauthz/server"
)

// floorServer is the floor: an ext_authz server that answers every Check with
// the same pre-built OK response setting one header, doing no work at all. It
// measures what gRPC, the transport and the load generator cost by themselves,
// served with tokentailor's own gRPC server options (server.GRPCOptions).
type floorServer struct {
	authv3.UnimplementedAuthorizationServer
	ok *authv3.CheckResponse
}

func newFloorServer() *floorServer {
	return &floorServer{ok: &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: "x-floor", Value: "ok"},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}},
	}}
}

// Check returns the pre-built answer.
func (f *floorServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return f.ok, nil
}

// listen opens a listener for a target: "unix:///path", "unix:path" or a TCP
// "host:port". A stale unix socket file is removed first.
func listen(target string) (net.Listener, error) {
	if path, ok := unixPath(target); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", strings.TrimPrefix(target, "tcp://"))
}

// unixPath returns the socket path of a unix target.
func unixPath(target string) (string, bool) {
	switch {
	case strings.HasPrefix(target, "unix://"):
		return strings.TrimPrefix(target, "unix://"), true
	case strings.HasPrefix(target, "unix:"):
		return strings.TrimPrefix(target, "unix:"), true
	}
	return "", false
}

// floorCmd runs the floor until ctx ends.
func floorCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	var targets stringList
	fs.Var(&targets, "listen", "address to serve: host:port or unix:///path (repeatable)")
	gcPercent := fs.Int("gc-percent", 0, "GC target as GOGC, unless GOGC is set (0: Go's default); bench passes tokentailor's runtime.gc_percent")
	memLimit := fs.Int64("memory-limit", 0, "soft memory limit in bytes, unless GOMEMLIMIT is set (0: none); bench passes tokentailor's runtime.memory_limit")
	pprofAddr := fs.String("pprof", "", "host:port to serve /debug/pprof/ on, as tokentailor's admin listener does with pprof: true (bench -profile profiles the floor through it)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			return 1
		}
		go func() { _ = http.Serve(ln, pprofMux()) }()
	}
	fmt.Println(tuneFloorRuntime(*gcPercent, *memLimit))
	if len(targets) == 0 {
		fmt.Fprintln(os.Stderr, "floor: at least one -listen is required")
		return 2
	}
	if err := serveFloor(ctx, targets, func(addrs []string) {
		fmt.Printf("floor listening on %s\n", strings.Join(addrs, " "))
	}); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	return 0
}

// pprofMux serves net/http/pprof's handlers, and nothing else.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	return mux
}

// tuneFloorRuntime applies the GC target and soft memory limit the way
// tokentailor applies its runtime section (an environment variable wins over
// the setting), and returns the line that states what the floor runs with.
func tuneFloorRuntime(gcPercent int, memLimit int64) string {
	if gcPercent > 0 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if memLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memLimit)
	}
	return runtimeLine()
}

// runtimeLine states the GC target, soft memory limit, GOMAXPROCS and
// codec this process runs with, in the form bench compares.
func runtimeLine() string {
	gc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gc)
	return formatRuntime(gc, debug.SetMemoryLimit(-1), runtime.GOMAXPROCS(0)) + " " + codecSetting(server.FastMarshal())
}

// formatRuntime renders runtime settings: "GOGC=400 GOMEMLIMIT=56.4MiB GOMAXPROCS=1".
func formatRuntime(gcPercent int, memLimit int64, procs int) string {
	gc, limit := strconv.Itoa(gcPercent), "off"
	if gcPercent < 0 {
		gc = "off"
	}
	if memLimit > 0 && memLimit < 1<<62 {
		limit = fmt.Sprintf("%.1fMiB", float64(memLimit)/(1<<20))
	}
	return fmt.Sprintf("GOGC=%s GOMEMLIMIT=%s GOMAXPROCS=%d", gc, limit, procs)
}

// serveFloor serves the floor on every target until ctx ends; ready is
// called with the bound addresses once all listen.
func serveFloor(ctx context.Context, targets []string, ready func([]string)) error {
	srv := grpc.NewServer(server.GRPCOptions()...)
	authv3.RegisterAuthorizationServer(srv, newFloorServer())
	var addrs []string
	errc := make(chan error, len(targets))
	for _, t := range targets {
		ln, err := listen(t)
		if err != nil {
			srv.Stop()
			return err
		}
		addrs = append(addrs, ln.Addr().Network()+"://"+ln.Addr().String())
		go func() { errc <- srv.Serve(ln) }()
	}
	if ready != nil {
		ready(addrs)
	}
	select {
	case <-ctx.Done():
		srv.Stop()
		return nil
	case err := <-errc:
		srv.Stop()
		return err
	}
}

// stringList is a repeatable string flag.
type stringList []string

// String joins the values.
func (l *stringList) String() string { return strings.Join(*l, ",") }

// Set appends one value.
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
