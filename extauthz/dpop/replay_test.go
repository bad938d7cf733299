package dpop

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemoryReplay(t *testing.T) {
	now := testNow
	m := NewMemoryReplay(2, func() time.Time { return now })
	ctx := context.Background()
	a, b, c := ReplayKey("k", "u", "a"), ReplayKey("k", "u", "b"), ReplayKey("k", "u", "c")
	steps := []struct {
		name     string
		advance  time.Duration
		key      [32]byte
		wantSeen bool
		wantErr  error
	}{
		{name: "first a", key: a},
		{name: "a again", key: a, wantSeen: true},
		{name: "b", key: b},
		{name: "full: c refused, nothing forgotten", key: c, wantErr: ErrReplayStore},
		{name: "a still seen when full", key: a, wantSeen: true},
		{name: "a expired: a is new again", advance: time.Minute + time.Second, key: a},
		{name: "c fits once b expired", key: c},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		seen, err := m.Add(ctx, s.key, now.Add(time.Minute))
		if seen != s.wantSeen || !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: seen=%v err=%v; want seen=%v err=%v", s.name, seen, err, s.wantSeen, s.wantErr)
		}
	}
	if n := m.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
}

func TestReplayKeyFields(t *testing.T) {
	// Field boundaries are length-prefixed: moving a byte between fields
	// gives another key.
	if ReplayKey("ab", "c", "d") == ReplayKey("a", "bc", "d") {
		t.Fatal("keys collide across field boundaries")
	}
}
