package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"

	"github.com/tokentailor/tokentailor/extauthz/jwks"
)

// KeySets shares issuer key sets between pipelines, keyed by their settings,
// so that a reload keeps the keys it has.
type KeySets struct {
	ctx  context.Context
	mu   sync.Mutex
	sets map[string]*keySetEntry
}

type keySetEntry struct {
	set    *jwks.Set
	cancel context.CancelFunc
}

// NewKeySets returns a registry whose key sets refresh until ctx ends or
// Close is called.
func NewKeySets(ctx context.Context) *KeySets {
	return &KeySets{ctx: ctx, sets: map[string]*keySetEntry{}}
}

func keySetID(o jwks.Options) string {
	b, _ := json.Marshal([]any{o.Issuer, o.URL, o.DiscoveryURL, o.RefreshInterval, o.MinRefetchInterval, o.Client.Timeout})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Get returns the running set for o, starting one when none runs yet.
func (k *KeySets) Get(o jwks.Options) *jwks.Set {
	id := keySetID(o)
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.sets[id]; e != nil {
		return e.set
	}
	ctx, cancel := context.WithCancel(k.ctx)
	s := jwks.New(o)
	go s.Run(ctx)
	k.sets[id] = &keySetEntry{set: s, cancel: cancel}
	return s
}

// Keep stops every set not used by p: after a reload, the sets only the old
// pipeline used; after a refused one, those the refused pipeline started.
func (k *KeySets) Keep(p *Pipeline) {
	k.retain(p.keySets)
}

// Close stops every set.
func (k *KeySets) Close() {
	k.retain(nil)
}

func (k *KeySets) retain(keep []*jwks.Set) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, e := range k.sets {
		if !slices.Contains(keep, e.set) {
			e.cancel()
			delete(k.sets, id)
		}
	}
}
