package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// profile takes one CPU profile of a server from its admin listener's pprof
// while a measured run goes on; the zero value (no -profile) does nothing.
type profile struct {
	ctx     context.Context
	url     string
	path    string
	errc    chan error
	started bool
}

// profiler returns the profile of scenario name over tr for c, written to
// -profile/NAME-TR.pprof and taken over the measured run's length (whole
// seconds, at least one), or a no-op without -profile.
func (b *benchRun) profiler(ctx context.Context, c *child, name, tr string) *profile {
	if b.o.profile == "" || c.admin == "" {
		return &profile{}
	}
	d := b.o.load.Duration
	if strings.HasPrefix(name, "cold") {
		d = b.o.coldDuration
	}
	return b.profileFor(ctx, c, name, tr, d)
}

// profileFor is profiler for a measured run of length d.
func (b *benchRun) profileFor(ctx context.Context, c *child, name, tr string, d time.Duration) *profile {
	if b.o.profile == "" || c.admin == "" {
		return &profile{}
	}
	secs := max(1, int(d/time.Second)-1)
	return &profile{
		ctx:  ctx,
		url:  fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", c.admin, secs),
		path: filepath.Join(b.o.profile, name+"-"+tr+".pprof"),
		errc: make(chan error, 1),
	}
}

// start begins the profile in the background (called when the measured run
// begins).
func (p *profile) start() {
	if p.url == "" {
		return
	}
	p.started = true
	go func() { p.errc <- p.fetch() }()
}

// wait returns once the profile is written, with its error.
func (p *profile) wait() error {
	if !p.started {
		return nil
	}
	if err := <-p.errc; err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	fmt.Printf("  CPU profile: %s\n", p.path)
	return nil
}

func (p *profile) fetch() error {
	body, err := getOK(p.ctx, http.DefaultClient, p.url)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p.path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
