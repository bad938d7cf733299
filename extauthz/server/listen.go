package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"google.golang.org/grpc"

	"github.com/tokentailor/tokentailor/extauthz/config"
)

// streamWorkersPerProc is how many long-lived goroutines per GOMAXPROCS serve
// gRPC streams (see GRPCOptions).
const streamWorkersPerProc = 16

// GRPCOptions are the options of the gRPC server that answers ext_authz
// Checks. Streams run on long-lived workers rather than on a new goroutine
// each: a new goroutine starts with a small stack and a Check's call depth
// made the runtime grow and copy it on nearly every request (a fifth of the
// server's CPU at 30k Checks/s); a worker keeps its grown stack (gRPC renews
// it every 65,536 streams). When every worker is busy, gRPC falls back to a
// new goroutine, so a slow Check (introspection) never queues others.
// Answers are marshalled by fastCodec. The load tool's floor serves with
// these same options. Compressed calls are refused (refuseGzip).
func GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(config.MaxGRPCMessageBytes),
		grpc.RPCDecompressor(refuseGzip{}), //nolint:staticcheck // the only way to refuse a registered compressor; supported throughout gRPC 1.x
		grpc.NumStreamWorkers(uint32(streamWorkersPerProc * runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(newFastCodec()),
	}
}

// errCompressed is why a compressed call is refused.
var errCompressed = errors.New("compressed gRPC messages are not accepted (Envoy sends Checks uncompressed)")

// refuseGzip refuses gzip-compressed calls without reading them. The OTLP
// exporter's gRPC dependency registers gzip for the whole process, and a
// gRPC server decompresses with any registered compressor: a few kilobytes
// of gzip unpack to the 64 MiB (config.MaxGRPCMessageBytes) the server
// receives, far past listen.max_request_bytes, before anything can judge
// their size. Envoy's ext_authz filter never compresses a Check, so none is
// accepted: a decompressor set with grpc.RPCDecompressor takes precedence
// over the registered one, and its error becomes the call's status
// (Internal, which Envoy treats as a failed Check: denied unless
// failure_mode_allow). gzip is the only compressor registered in this
// binary (cmd/tokentailor's TestOnlyGzipIsRegistered keeps it so).
type refuseGzip struct{}

// Do refuses the message unread.
func (refuseGzip) Do(io.Reader) ([]byte, error) { return nil, errCompressed }

// Type is the grpc-encoding this decompressor answers for.
func (refuseGzip) Type() string { return "gzip" }

// newHTTPServer serves the HTTP authorization listener. Proxies keep
// connections open, so the idle timeout is generous; a subrequest has no
// body worth reading.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 1 << 20}
}

func (s *Server) listen(cfg *config.Config) error {
	var err error
	if cfg.Listen.GRPC != "" {
		if s.grpcLn, err = net.Listen("tcp", cfg.Listen.GRPC); err != nil {
			return fmt.Errorf("listen.grpc: %w", err)
		}
	}
	if s.socketLn, err = listenUnix("listen.socket", cfg.Listen.Socket); err != nil {
		return err
	}
	if cfg.Listen.Admin != "" {
		if s.adminLn, err = net.Listen("tcp", cfg.Listen.Admin); err != nil {
			return fmt.Errorf("listen.admin: %w", err)
		}
	}
	if cfg.Listen.HTTP != "" {
		if s.httpLn, err = net.Listen("tcp", cfg.Listen.HTTP); err != nil {
			return fmt.Errorf("listen.http: %w", err)
		}
	}
	if s.httpSocketLn, err = listenUnix("listen.http_socket", cfg.Listen.HTTPSocket); err != nil {
		return err
	}
	return nil
}

// listenUnix binds the unix socket path (field names it in errors); an empty
// path binds nothing.
func listenUnix(field, path string) (net.Listener, error) {
	if path == "" {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	// A socket left by a crashed process would make Listen fail.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	// The proxy runs as another user in the same pod: let the group in.
	_ = os.Chmod(path, 0o660)
	return ln, nil
}

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.grpcLn, s.socketLn, s.adminLn, s.httpLn, s.httpSocketLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// GRPCAddr is the bound TCP address of the gRPC listener, or nil.
func (s *Server) GRPCAddr() net.Addr { return addr(s.grpcLn) }

// HTTPAddr is the bound TCP address of the HTTP authorization listener, or nil.
func (s *Server) HTTPAddr() net.Addr { return addr(s.httpLn) }

// AdminAddr is the bound address of the admin listener, or nil.
func (s *Server) AdminAddr() net.Addr { return addr(s.adminLn) }

func addr(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
