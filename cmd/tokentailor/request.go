package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tokentailor/tokentailor/envoy/authzfilter"
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
	hdr := http.Header{}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "bad header %q: want \"name: value\"\n", h)
			return 2
		}
		hdr.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	opts := authzfilter.CheckOptions{}
	if *route != "" {
		opts.ContextExtensions = map[string]string{"route": *route}
	}
	// Built by the same model of Envoy's filter the e2e tests use: lower-case
	// header map with pseudo-headers, duplicates joined with ",".
	req := authzfilter.BuildCheckRequest(authzfilter.Request{
		Method: method, Scheme: "http", Host: *host, Path: path, Header: hdr, RemoteAddr: "127.0.0.1:50000", Protocol: "HTTP/1.1",
	}, opts)
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
