package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// headerFlags collects repeated -H "name: value" flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func requestCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("request", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9191", "tokentailor gRPC address (host:port or unix:///path)")
	host := fs.String("host", "app.example.com", "the request's :authority")
	route := fs.String("route", "", "context extension route=NAME, as Envoy's per-route config would send")
	timeout := fs.Duration("timeout", 2*time.Second, "Check timeout")
	var headers headerFlags
	fs.Var(&headers, "H", `request header "name: value" (repeatable)`)
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: tokentailor request [-addr ADDR] [-H 'name: value']... [-route NAME] METHOD PATH")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	method, path := strings.ToUpper(fs.Arg(0)), fs.Arg(1)
	hm := map[string]string{":method": method, ":path": path, ":authority": *host, ":scheme": "http"}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "bad header %q: want \"name: value\"\n", h)
			return 2
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if prev, dup := hm[name]; dup {
			value = prev + "," + value // Envoy joins duplicate headers
		}
		hm[name] = value
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: *host, Scheme: "http", Headers: hm, Protocol: "HTTP/1.1",
		}},
		Source:      &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
	}}
	if *route != "" {
		req.Attributes.ContextExtensions = map[string]string{"route": *route}
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokentailor request:", err)
		return 1
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokentailor request: Check failed (Envoy would answer status_on_error):", err)
		return 1
	}
	out, _ := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
	fmt.Println(string(out))
	if resp.GetStatus().GetCode() != 0 {
		return 3
	}
	return 0
}
