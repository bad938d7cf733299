// Package logsample thins out log lines that repeat: per key (a deny
// reason, say), the first N lines of each window are logged, the rest are
// counted, and the count is handed back once, with the next line of that key
// that is logged, for one summary line ("suppressed K"). Metrics, not logs,
// are where exact counts live: a flood of 700,000 denials should cost a few
// lines a second, not 160 MB.
//
// A Sampler holds no goroutine: a summary is due when the key is next seen
// in a later window, so the last burst's count shows up with the next line
// of that key, however late.
package logsample

import (
	"sync"
	"time"
)

// MaxKeys bounds the keys a Sampler tracks; lines of keys beyond it share
// one bucket under OverflowKey.
const MaxKeys = 1024

// OverflowKey is the bucket of keys beyond MaxKeys.
const OverflowKey = "(other)"

// Sampler decides which lines to log. It is safe for concurrent use.
type Sampler struct {
	per    int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*bucket
}

// bucket is one key's window.
type bucket struct {
	start      time.Time // start of the current window
	logged     int       // lines admitted in it
	suppressed int       // lines refused since the last admitted one
}

// New returns a Sampler that admits per lines per key in each window.
// per ≤ 0 or window ≤ 0 admits every line. now is the clock; nil means
// time.Now.
func New(per int, window time.Duration, now func() time.Time) *Sampler {
	if now == nil {
		now = time.Now
	}
	return &Sampler{per: per, window: window, now: now, keys: map[string]*bucket{}}
}

// Admit reports whether a line of key may be logged now. When it may and
// lines of key were refused before, suppressed is how many: log them as one
// summary line. A nil Sampler admits everything.
func (s *Sampler) Admit(key string) (ok bool, suppressed int) {
	if s == nil || s.per <= 0 || s.window <= 0 {
		return true, 0
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, found := s.keys[key]
	if !found {
		if len(s.keys) >= MaxKeys {
			key = OverflowKey
			b = s.keys[key]
		}
		if b == nil {
			b = &bucket{start: now}
			s.keys[key] = b
		}
	}
	if now.Sub(b.start) >= s.window || now.Before(b.start) {
		b.start, b.logged = now, 0
	}
	if b.logged >= s.per {
		b.suppressed++
		return false, 0
	}
	b.logged++
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}
