package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/tokentailor/tokentailor/extauthz"
	"github.com/tokentailor/tokentailor/extauthz/config"
	"github.com/tokentailor/tokentailor/extauthz/pipeline"
)

// ErrConfigChanging is returned by Reload while the config files are still
// being written: their content differed between two reads a settle interval
// apart. The watcher tries again once they are still.
var ErrConfigChanging = errors.New("config files still changing")

// Reload loads the config again and swaps it in if it is valid and its keys
// load. A bad config is refused and the old one keeps serving. Unchanged
// files are not reloaded unless force is set, and files whose content is
// still changing are not read as a config at all (ErrConfigChanging): a file
// written in place, not renamed into place, is half-written for a moment.
//
// A pipeline that can serve is never replaced by one that cannot: when the
// new pipeline's issuer keys are not fetched within ReadyTimeout, the old one
// keeps serving and the new one is swapped in by the background once its
// keys arrive (unless a later reload supersedes it).
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
	if !s.settled(ctx, cfg, sum) {
		s.log.Info("config files still changing; reloading once they are still")
		return ErrConfigChanging
	}
	if err != nil {
		s.failedSum = sum
	} else {
		var p *pipeline.Pipeline
		if p, err = pipeline.Build(ctx, cfg, s.env()); err == nil {
			s.cancelPending()
			s.waitReady(ctx, p)
			if serving := s.authz.Pipeline(); p.Ready() != nil && serving.Ready() == nil {
				// The old pipeline serves; the new one cannot yet. Keep the
				// old one and swap when the new one is ready. Key sets only
				// a superseded pending pipeline used stop now.
				s.keySets.Keep(serving, p)
				s.lastSum, s.failedSum = sum, [32]byte{}
				s.swapWhenReady(p)
				s.log.Warn("config accepted, waiting for its issuers' keys; the previous config keeps serving", "error", p.Ready())
				return nil
			}
			s.swap(p)
			s.lastSum, s.failedSum = sum, [32]byte{}
			return nil
		}
		s.cancelPending()
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

// swap makes p the serving pipeline. reloadMu is held.
func (s *Server) swap(p *pipeline.Pipeline) {
	old := s.authz.Swap(p)
	old.Close()
	s.keySets.Keep(p)
	cfg := p.Config
	s.level.Set(parseLevel(cfg.Log.Level))
	s.metrics.Reload(nil)
	s.log.Info("config reloaded", "routes", len(cfg.Routes), "signing_key", signingKey(p), "previous_signing_key", signingKey(old))
	logConfigWarnings(s.log, cfg)
	if restartSettings(cfg) != s.restartSum {
		s.log.Warn("listen addresses, trusted proxies, pprof, log format, runtime or tracing settings changed: they take effect on restart only")
	}
}

// swapWhenReady swaps p in once its keys are fetched, unless a later reload
// or the server's stop cancels it first. The key sets of both pipelines run
// meanwhile. reloadMu is held.
func (s *Server) swapWhenReady(p *pipeline.Pipeline) {
	ctx, cancel := context.WithCancel(context.Background())
	s.pending, s.pendingCancel = p, cancel
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if p.Ready() != nil {
				continue
			}
			s.reloadMu.Lock()
			if ctx.Err() == nil && !s.closed {
				s.pending, s.pendingCancel = nil, nil
				s.swap(p)
			}
			s.reloadMu.Unlock()
			return
		}
	}()
}

// cancelPending gives up a pipeline waiting for its keys and closes it (its
// revocation handlers and introspectors). reloadMu is held; the key sets
// only it used are stopped by the next Keep.
func (s *Server) cancelPending() {
	if s.pendingCancel != nil {
		s.pendingCancel()
		s.pending.Close()
		s.pending, s.pendingCancel = nil, nil
	}
}

// settled reports whether the config files (sum as read with cfg) still
// have the same content after the settle interval. A file written in place
// can be read half-written; a writer that pauses longer than the interval
// mid-file still defeats this, which is why a route cannot lose its
// requirement by truncation either (config: require must be stated).
func (s *Server) settled(ctx context.Context, cfg *config.Config, sum [32]byte) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(s.opts.Settle):
	}
	again, _ := config.Load(s.opts.ConfigPath)
	if again == nil {
		again = cfg
	}
	return s.sum(again) == sum && s.sum(cfg) == sum
}

func signingKey(p *pipeline.Pipeline) string {
	if p == nil || p.Minter == nil {
		return ""
	}
	return p.Minter.SigningKeyID()
}

// waitReady gives a new pipeline's new key sets a moment to fetch, so that
// most reloads swap at once.
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
			debounce = time.After(settleAfterEvent)
		case err := <-watchErrs:
			// fsnotify stops delivering until its error is read; an error
			// (e.g. an inotify queue overflow) may also mean lost events.
			s.log.Warn("file watch error; checking the files now", "error", err)
			debounce = time.After(settleAfterEvent)
		case <-debounce:
			if errors.Is(s.Reload(ctx, false), ErrConfigChanging) {
				debounce = time.After(settleAfterEvent)
			}
			if w != nil {
				s.watchDirs(w)
			}
		case <-poll.C:
			_ = s.Reload(ctx, false)
		}
	}
}

// settleAfterEvent is how long the files must see no event before a reload
// reads them.
const settleAfterEvent = 500 * time.Millisecond

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

// logConfigWarnings logs what the config allows but should not (files of
// keys and secrets that other users may read).
func logConfigWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("config warning", "warning", w)
	}
}
