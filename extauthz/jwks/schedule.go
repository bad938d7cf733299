package jwks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tokentailor/tokentailor/extauthz"
)

// flight is one fetch that concurrent callers wait for.
type flight struct {
	done chan struct{}
	err  error
}

// Why an on-demand fetch did not start.
var (
	// errFresh: a fetch succeeded less than MinRefetchInterval ago.
	errFresh = errors.New("key set fetched moments ago")
	// errBackoff: the last fetch failed and the retry backoff has not passed.
	errBackoff = errors.New("issuer unreachable at the last fetch; retrying after a backoff")
)

// Run fetches the set at once, then every RefreshInterval until ctx ends.
// After a failed fetch it retries on the backoff schedule (see the package
// doc), whether or not keys are held, so neither readiness nor a rotation
// missed during an outage waits a whole refresh period.
func (s *Set) Run(ctx context.Context) {
	for {
		wait := s.tick(ctx)
		if ctx.Err() != nil {
			return
		}
		if wait <= 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// tick waits for the fetch in flight, or starts the periodic one when it is
// due and waits for it, and returns 0; else it returns the time until the
// next one is due. Due and start are decided under one lock with the
// on-demand rule, so Run never adds a fetch the schedule does not allow.
func (s *Set) tick(ctx context.Context) time.Duration {
	st := s.settings.Load()
	s.mu.Lock()
	f := s.flight
	if f == nil {
		now := s.now()
		var due time.Time
		switch {
		case s.lastAttempt.IsZero():
		case s.failures > 0:
			due = s.lastAttempt.Add(st.backoff(s.failures))
		default:
			due = s.lastSuccess.Add(st.refresh)
		}
		if wait := due.Sub(now); wait > 0 {
			s.mu.Unlock()
			return wait
		}
		f = s.startLocked(ctx, st, now)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
	case <-ctx.Done():
	}
	return 0
}

// Refresh fetches the set now, or waits for the fetch in flight. On failure
// the keys held so far are kept and the error wraps
// extauthz.ErrKeysUnavailable.
func (s *Set) Refresh(ctx context.Context) error {
	return s.fetch(ctx, false)
}

// fetch joins the fetch in flight or starts one. With onDemand, it starts
// one only when the rules of the package doc allow it, else returns
// errFresh or errBackoff (wrapped in extauthz.ErrKeysUnavailable). The
// fetch itself is not cancelled when the caller that started it goes away;
// it is bounded by the client's timeout.
func (s *Set) fetch(ctx context.Context, onDemand bool) error {
	st := s.settings.Load()
	s.mu.Lock()
	f := s.flight
	if f == nil {
		now := s.now()
		if onDemand && !s.lastAttempt.IsZero() {
			if s.failures == 0 && now.Sub(s.lastAttempt) < st.minRefetch {
				s.mu.Unlock()
				return errFresh
			}
			if s.failures > 0 && now.Sub(s.lastAttempt) < st.backoff(s.failures) {
				s.mu.Unlock()
				return fmt.Errorf("%w: %w", extauthz.ErrKeysUnavailable, errBackoff)
			}
		}
		f = s.startLocked(ctx, st, now)
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the key set: %w", extauthz.ErrKeysUnavailable, ctx.Err())
	}
}

// startLocked starts a fetch in the background; s.mu must be held.
func (s *Set) startLocked(ctx context.Context, st *settings, now time.Time) *flight {
	f := &flight{done: make(chan struct{})}
	s.flight, s.lastAttempt = f, now
	go s.fly(context.WithoutCancel(ctx), f, st, now)
	return f
}

// fly runs one fetch and records its outcome.
func (s *Set) fly(ctx context.Context, f *flight, st *settings, started time.Time) {
	ctx, cancel := context.WithTimeout(ctx, st.client.Timeout)
	err := s.get(ctx, st)
	cancel()
	s.mu.Lock()
	if err == nil {
		s.failures, s.lastSuccess = 0, started
	} else {
		s.failures++
	}
	s.flight, f.err = nil, err
	s.mu.Unlock()
	close(f.done)
	s.poke() // the schedule moved: Run decides again
}

// poke wakes Run without blocking.
func (s *Set) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
