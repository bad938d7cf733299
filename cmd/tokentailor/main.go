// Command tokentailor is an Envoy ext_authz server that validates access
// tokens (JWTs locally, opaque tokens by introspection) and hands each
// upstream a narrowed internal token. Run "tokentailor help" for commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// commands maps each subcommand to its function; each returns an exit code.
var commands = map[string]func(ctx context.Context, args []string) int{
	"serve":          serveCmd,
	"check-config":   checkConfigCmd,
	"dev":            devCmd,
	"explain":        explainCmd,
	"request":        requestCmd,
	"inject-webhook": injectWebhookCmd,
	"version":        versionCmd,
	"-version":       versionCmd, "--version": versionCmd,
}

const usage = `tokentailor: Envoy ext_authz server that mints narrowed internal tokens

Usage:
  tokentailor serve -config FILE          run the ext_authz gRPC server and admin listener
  tokentailor check-config FILE           validate a config (and load its keys); non-zero exit on error
  tokentailor dev                         run on an embedded config with a built-in development issuer
  tokentailor explain -config FILE ...    show the decision for a token and a request, without Envoy
  tokentailor request -addr ADDR ...      send one Check to a running tokentailor, as Envoy would
  tokentailor inject-webhook ...          run the Kubernetes sidecar injection webhook
  tokentailor version                     print the version

Run "tokentailor COMMAND -h" for a command's flags.
`

func run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(os.Stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "tokentailor: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cmd(ctx, args[1:])
}
