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
