package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
)

// Reload loads the config again and swaps it in if it is valid and its keys
// load. A bad config is refused and the old one keeps serving. Unchanged
// files are not reloaded unless force is set.
func (s *Server) Reload(ctx context.Context, force bool) error {
	if s.opts.Config != nil {
		return nil
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.closed {
		return nil
	}
	cfg, err := config.Load(s.opts.ConfigPath)
	sum := s.sum(cfg)
	if !force && (sum == s.lastSum || sum == s.failedSum) {
		// Unchanged, or the same files that were refused last time.
		return nil
	}
	if err != nil {
		s.failedSum = sum
	} else {
		var p *pipeline.Pipeline
		if p, err = pipeline.Build(ctx, cfg, s.env()); err == nil {
			s.waitReady(ctx, p)
			old := s.authz.Swap(p)
			s.keySets.Keep(p)
			s.lastSum, s.failedSum = sum, [32]byte{}
			s.level.Set(parseLevel(cfg.Log.Level))
			s.metrics.Reload(nil)
			s.log.Info("config reloaded", "routes", len(cfg.Routes), "signing_key", signingKey(p), "previous_signing_key", signingKey(old))
			if restartSettings(cfg) != s.restartSum {
				s.log.Warn("listen addresses, trusted proxies, pprof, log format or runtime settings changed: they take effect on restart only")
			}
			return nil
		}
		s.keySets.Keep(s.authz.Pipeline())
		// An unreachable issuer may come back: only other failures wait
		// for the files to change before the next attempt.
		if !errors.Is(err, extauthz.ErrIssuerUnavailable) {
			s.failedSum = sum
		}
	}
	s.metrics.Reload(err)
	s.log.Error("config reload refused; the previous config keeps serving", "error", err)
	return err
}

func signingKey(p *pipeline.Pipeline) string {
	if p == nil || p.Minter == nil {
		return ""
	}
	return p.Minter.SigningKeyID()
}

// waitReady gives a new pipeline's new key sets a moment to fetch, so the
// swap does not turn valid tokens into 503s.
func (s *Server) waitReady(ctx context.Context, p *pipeline.Pipeline) {
	deadline := time.Now().Add(s.opts.ReadyTimeout)
	for p.Ready() != nil && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sum hashes the config file and every file it names (none when cfg is nil:
// a file that does not load), to tell a real change from a touch.
func (s *Server) sum(cfg *config.Config) [32]byte {
	h := sha256.New()
	files := []string{s.opts.ConfigPath}
	if cfg != nil {
		files = append(files, cfg.Files()...)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintf(h, "missing:%s\n", f)
			continue
		}
		fmt.Fprintf(h, "%s:%d\n", f, len(b))
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// watch reloads on a reload signal and when a watched file changes.
// Kubernetes updates mounted ConfigMaps and Secrets by swapping a symlink in
// the directory, so the directories are watched, not the files; a poll every
// few seconds backs fsnotify up where events are lost.
func (s *Server) watch(ctx context.Context, reload <-chan struct{}) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("file watching unavailable; reload on SIGHUP and by polling", "error", err)
	}
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if w != nil {
		defer w.Close()
		events, watchErrs = w.Events, w.Errors
		s.watchDirs(w)
	}
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
			s.log.Info("reload requested")
			_ = s.Reload(ctx, true)
			if w != nil {
				s.watchDirs(w)
			}
		case <-events:
			debounce = time.After(300 * time.Millisecond)
		case err := <-watchErrs:
			// fsnotify stops delivering until its error is read; an error
			// (e.g. an inotify queue overflow) may also mean lost events.
			s.log.Warn("file watch error; checking the files now", "error", err)
			debounce = time.After(300 * time.Millisecond)
		case <-debounce:
			_ = s.Reload(ctx, false)
			if w != nil {
				s.watchDirs(w)
			}
		case <-poll.C:
			_ = s.Reload(ctx, false)
		}
	}
}

func (s *Server) watchDirs(w *fsnotify.Watcher) {
	files := append([]string{s.opts.ConfigPath}, s.authz.Pipeline().Config.Files()...)
	for _, f := range files {
		if f == "" {
			continue
		}
		if abs, err := filepath.Abs(f); err == nil {
			_ = w.Add(filepath.Dir(abs))
		}
	}
}
