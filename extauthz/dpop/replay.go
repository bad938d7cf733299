package dpop

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"
)

// ReplayCache remembers the proofs already accepted (RFC 9449 §11.1). It is
// small on purpose so that a shared store (Redis, extauthz/sharedcache) can
// back it for replicas: a proof replayed to another replica is then refused
// too.
type ReplayCache interface {
	// Add records key until the given time and reports whether it was
	// already recorded and still live. An error means the key could not be
	// recorded; the proof is then refused (fail closed).
	Add(ctx context.Context, key [sha256.Size]byte, until time.Time) (seen bool, err error)
}

// ReplayKey is the key under which a proof is remembered: SHA-256 over the
// key's thumbprint, the normalised htu and the jti, so the cache never holds
// a client-chosen string and one client cannot block another's jti.
func ReplayKey(jkt, htu, jti string) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range [...]string{jkt, htu, jti} {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// MemoryReplay is a ReplayCache in process memory, bounded in entries.
// Entries are added with a deadline that never decreases (the verifier
// passes now + the acceptance window), so they expire in the order they were
// added and a FIFO queue finds the expired ones without scanning. When every
// slot holds a live entry, Add fails rather than forget one: forgetting would
// let that proof be replayed.
type MemoryReplay struct {
	mu    sync.Mutex
	max   int
	now   func() time.Time
	seen  map[[sha256.Size]byte]time.Time
	queue []replayEntry // FIFO, head at queue[head]
	head  int
}

type replayEntry struct {
	key   [sha256.Size]byte
	until time.Time
}

var _ ReplayCache = (*MemoryReplay)(nil)

// NewMemoryReplay returns a MemoryReplay holding at most maxEntries proofs
// (DefaultReplayEntries when not positive). now is the clock; nil means
// time.Now.
func NewMemoryReplay(maxEntries int, now func() time.Time) *MemoryReplay {
	if maxEntries <= 0 {
		maxEntries = DefaultReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplay{max: maxEntries, now: now, seen: make(map[[sha256.Size]byte]time.Time)}
}

// Add implements ReplayCache.
func (m *MemoryReplay) Add(_ context.Context, key [sha256.Size]byte, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.expire(now)
	if u, ok := m.seen[key]; ok && now.Before(u) {
		return true, nil
	}
	if len(m.seen) >= m.max {
		return false, ErrReplayStore
	}
	m.seen[key] = until
	m.queue = append(m.queue, replayEntry{key: key, until: until})
	return false, nil
}

// Len returns the number of live entries.
func (m *MemoryReplay) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(m.now())
	return len(m.seen)
}

// expire drops entries whose deadline has passed, from the queue's head.
func (m *MemoryReplay) expire(now time.Time) {
	for m.head < len(m.queue) && !now.Before(m.queue[m.head].until) {
		e := m.queue[m.head]
		if u, ok := m.seen[e.key]; ok && u.Equal(e.until) {
			delete(m.seen, e.key)
		}
		m.queue[m.head] = replayEntry{}
		m.head++
	}
	if m.head > 0 && m.head*2 >= len(m.queue) {
		m.queue = append(m.queue[:0], m.queue[m.head:]...)
		m.head = 0
	}
}
