// Command otlpreceiver runs the OpenTelemetry Collector's own OTLP receiver
// (go.opentelemetry.io/collector/receiver/otlpreceiver) on 127.0.0.1, gRPC
// and HTTP, for tokentailor's tracing test (extauthz/server,
// TestTracingToARealOTLPReceiver). It is a module of its own so that the
// collector's dependencies stay out of tokentailor's go.mod.
//
// It prints one line "grpc=HOST:PORT http=HOST:PORT" once both listen, then
// every batch of spans it receives as one line of OTLP JSON, until stdin
// closes or it is killed. -grpc and -http choose the addresses (default: free
// loopback ports), e.g. for README "Tracing":
//
//	otlpreceiver -grpc 127.0.0.1:4317 -http 127.0.0.1:4318
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "otlpreceiver:", err)
		os.Exit(1)
	}
}

// freeAddr is a loopback address nothing listens on, for the receiver,
// which takes an address rather than a listener.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func run() error {
	grpcAddr := flag.String("grpc", "", "OTLP/gRPC address (default: a free 127.0.0.1 port)")
	httpAddr := flag.String("http", "", "OTLP/HTTP address (default: a free 127.0.0.1 port)")
	flag.Parse()
	for _, a := range []*string{grpcAddr, httpAddr} {
		if *a == "" {
			free, err := freeAddr()
			if err != nil {
				return err
			}
			*a = free
		}
	}
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	// Both protocols are defaults that only a config file turns on:
	// take the defaults and turn them on here.
	g := cfg.Protocols.GRPC.GetOrInsertDefault()
	g.NetAddr.Endpoint = *grpcAddr
	h := cfg.Protocols.HTTP.GetOrInsertDefault()
	h.ServerConfig.NetAddr.Endpoint = *httpAddr
	cfg.Protocols.GRPC = configoptional.Some(*g)
	cfg.Protocols.HTTP = configoptional.Some(*h)

	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	sink, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		out.Write(b)
		out.WriteByte('\n')
		return out.Flush()
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	r, err := f.CreateTraces(ctx, receivertest.NewNopSettings(f.Type()), cfg, sink)
	if err != nil {
		return err
	}
	if err := r.Start(ctx, componenttest.NewNopHost()); err != nil {
		return err
	}
	mu.Lock()
	fmt.Fprintf(out, "grpc=%s http=%s\n", *grpcAddr, *httpAddr)
	out.Flush()
	mu.Unlock()
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes stdin
	return r.Shutdown(ctx)
}
