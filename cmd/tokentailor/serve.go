package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
	"github.com/tokentailor/tokentailor/extauthz/server"
)

func serveCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "/etc/tokentailor/config.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return serve(ctx, server.Options{ConfigPath: *path, TuneRuntime: true}, nil)
}

// serve runs a server until ctx ends; ready, when set, is called once it listens.
func serve(ctx context.Context, opts server.Options, ready func(*server.Server)) int {
	srv, err := server.New(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "tokentailor: %v\n", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	if ready != nil {
		ready(srv)
	}
	if err := srv.Serve(ctx, reload); err != nil {
		fmt.Fprintf(os.Stderr, "tokentailor: %v\n", err)
		return 1
	}
	return 0
}

func checkConfigCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	offline := fs.Bool("offline", false, "validate the file only: do not load keys or contact issuers")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tokentailor check-config [-offline] FILE")
		return 2
	}
	cfg, err := config.Load(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid:\n%v\n", fs.Arg(0), err)
		return 1
	}
	if !*offline {
		// Load keys and secrets and reach discovery where endpoints come from
		// it, exactly as serve would, without listening.
		p, err := pipeline.Build(ctx, cfg, pipeline.Env{})
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: invalid:\n%v\n", fs.Arg(0), err)
			return 1
		}
		_ = p
	}
	fmt.Printf("%s: ok (%d issuers, %d routes)\n", fs.Arg(0), len(cfg.Issuers), len(cfg.Routes))
	return 0
}
