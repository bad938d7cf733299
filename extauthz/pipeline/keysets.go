package pipeline

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/tokentailor/tokentailor/extauthz/discovery"
	"github.com/tokentailor/tokentailor/extauthz/jwks"
)

// KeySets shares what pipelines fetch from issuers in the background, their
// key sets and their discovery metadata, so that a reload keeps what it has:
// a key set is keyed by jwks.Options.ID (issuer and where the keys come
// from), so a reload that keeps those keeps the keys whatever else changes
// (refresh intervals, http_timeout), even while the issuer is down; a
// metadata resolver is keyed by issuer and metadata URL. Everything runs on
// contexts KeySets cancels: Keep stops what a discarded pipeline alone used.
type KeySets struct {
	ctx       context.Context
	mu        sync.Mutex
	sets      map[string]*keySetEntry
	resolvers map[string]*resolverEntry
}

type keySetEntry struct {
	set    *jwks.Set
	cancel context.CancelFunc
}

type resolverEntry struct {
	r      *discovery.Resolver
	cancel context.CancelFunc
}

// NewKeySets returns a registry whose key sets and resolvers run until ctx
// ends or Close is called.
func NewKeySets(ctx context.Context) *KeySets {
	return &KeySets{ctx: ctx, sets: map[string]*keySetEntry{}, resolvers: map[string]*resolverEntry{}}
}

// Get returns the running set for o, starting one when none runs yet. A
// running set takes o's settings (jwks.Set.Update) and keeps its keys.
func (k *KeySets) Get(o jwks.Options) (*jwks.Set, error) {
	id := o.ID()
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.sets[id]; e != nil {
		if err := e.set.Update(o); err != nil {
			return nil, err
		}
		return e.set, nil
	}
	s, err := jwks.New(o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(k.ctx)
	go s.Run(ctx)
	k.sets[id] = &keySetEntry{set: s, cancel: cancel}
	return s, nil
}

// Resolver returns the running metadata resolver for o's issuer and URL,
// starting one when none runs yet. A running one takes o's client and keeps
// the document it found.
func (k *KeySets) Resolver(o discovery.ResolverOptions) *discovery.Resolver {
	id := fmt.Sprintf("%q %q", o.Issuer, o.URL)
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.resolvers[id]; e != nil {
		e.r.SetClient(o.Client)
		return e.r
	}
	r := discovery.NewResolver(o)
	ctx, cancel := context.WithCancel(k.ctx)
	go r.Run(ctx)
	k.resolvers[id] = &resolverEntry{r: r, cancel: cancel}
	return r
}

// Keep stops every set and resolver not used by one of ps: after a reload,
// those only the old pipeline used; after a refused one, those the refused
// pipeline started; while a reloaded pipeline waits for its keys (ps: the
// serving one and it), those only a superseded waiting one used. The ones
// ps use get their settings back in order (the last one's win where they
// share), undoing what a refused build applied to them.
func (k *KeySets) Keep(ps ...*Pipeline) {
	for _, p := range ps {
		for _, u := range p.keySets {
			// Same ID and options that were valid once: Update cannot fail.
			_ = u.set.Update(u.opts)
		}
		for _, u := range p.resolvers {
			u.r.SetClient(u.client)
		}
	}
	k.retain(ps...)
}

// Running is the number of key sets and metadata resolvers running.
func (k *KeySets) Running() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.sets) + len(k.resolvers)
}

// Close stops every set and resolver.
func (k *KeySets) Close() {
	k.retain()
}

// retain stops every set and resolver none of ps uses.
func (k *KeySets) retain(ps ...*Pipeline) {
	var sets []*jwks.Set
	var resolvers []*discovery.Resolver
	for _, p := range ps {
		for _, u := range p.keySets {
			sets = append(sets, u.set)
		}
		for _, u := range p.resolvers {
			resolvers = append(resolvers, u.r)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, e := range k.sets {
		if !slices.Contains(sets, e.set) {
			e.cancel()
			delete(k.sets, id)
		}
	}
	for id, e := range k.resolvers {
		if !slices.Contains(resolvers, e.r) {
			e.cancel()
			delete(k.resolvers, id)
		}
	}
}
