package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/tokentailor/tokentailor/k8s/inject"
)

func injectWebhookCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("inject-webhook", flag.ContinueOnError)
	var o inject.Options
	fs.StringVar(&o.Addr, "addr", inject.DefaultAddr, "TLS listen address")
	fs.StringVar(&o.CertFile, "cert", "", "serving certificate (PEM), reloaded when it changes (required)")
	fs.StringVar(&o.KeyFile, "key", "", "serving key (PEM), reloaded when it changes (required)")
	fs.StringVar(&o.Namespace, "namespace", "", "the webhook's own namespace: its pods are never mutated")
	fs.StringVar(&o.EnvoyImage, "envoy-image", "", "image of the injected Envoy sidecar (default: the webhook's built-in)")
	fs.StringVar(&o.TokentailorImage, "tokentailor-image", "", "image of the injected tokentailor sidecar (default: the webhook's built-in)")
	fs.StringVar(&o.DefaultConfigMap, "config-map", "", "tokentailor ConfigMap used when a pod names none")
	fs.StringVar(&o.DefaultSigningKeySecret, "signing-key-secret", "", "signing key Secret used when a pod names none")
	format := fs.String("log-format", "json", "log format: json or text")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.CertFile == "" || o.KeyFile == "" {
		fmt.Fprintln(os.Stderr, "inject-webhook: -cert and -key are required")
		return 2
	}
	var h slog.Handler = slog.NewJSONHandler(os.Stderr, nil)
	if *format == "text" {
		h = slog.NewTextHandler(os.Stderr, nil)
	}
	if err := inject.Run(ctx, o, slog.New(h)); err != nil {
		fmt.Fprintln(os.Stderr, "inject-webhook:", err)
		return 1
	}
	return 0
}
