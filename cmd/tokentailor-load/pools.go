package main

import (
	"fmt"
	"runtime"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// tokenPools are the pre-built requests of the scenarios.
type tokenPools struct {
	warmJWT, warmOpaque  []*authv3.CheckRequest
	coldES256, coldRS256 *coldPool
}

// coldPool is a cold scenario's requests, marshalled once and sent round and
// round (source.cycle), and one of its tokens for the crypto sub-mode.
type coldPool struct {
	raw    [][]byte
	sample string
}

// pools signs every token the scenarios need, on all CPUs.
func (b *benchRun) pools() (*tokenPools, error) {
	o := b.o
	p := &tokenPools{}
	var err error
	if p.warmJWT, err = b.signPool("ES256", "warm", o.warmTokens); err != nil {
		return nil, err
	}
	for i := range o.warmTokens {
		p.warmOpaque = append(p.warmOpaque, checkRequest(opaque(i), i))
	}
	if o.scenarioSet["cold-es256-es256"] {
		if p.coldES256, err = b.coldPool("ES256"); err != nil {
			return nil, err
		}
	}
	if o.scenarioSet["cold-rs256-eddsa"] {
		if p.coldRS256, err = b.coldPool("RS256"); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// coldPool signs o.coldPool tokens with alg and marshals their requests.
func (b *benchRun) coldPool(alg string) (*coldPool, error) {
	toks, err := b.signTokens(alg, "cold", b.o.coldPool)
	if err != nil {
		return nil, err
	}
	cp := &coldPool{raw: make([][]byte, len(toks)), sample: toks[0]}
	for i, t := range toks {
		if cp.raw[i], err = proto.Marshal(checkRequest(t, i)); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// signPool signs n tokens with alg in parallel and builds their requests.
func (b *benchRun) signPool(alg, prefix string, n int) ([]*authv3.CheckRequest, error) {
	toks, err := b.signTokens(alg, prefix, n)
	if err != nil {
		return nil, err
	}
	out := make([]*authv3.CheckRequest, n)
	for i, t := range toks {
		out[i] = checkRequest(t, i)
	}
	return out, nil
}

// signTokens signs n tokens with alg in parallel, one subject each.
func (b *benchRun) signTokens(alg, prefix string, n int) ([]string, error) {
	if n < 1 {
		return nil, fmt.Errorf("%s pool of %d tokens: need at least one", alg, n)
	}
	out := make([]string, n)
	errs := make([]error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += len(errs) {
				tok, err := b.iss.sign(alg, fmt.Sprintf("%s-%s-%d", prefix, alg, i))
				if err != nil {
					errs[w] = err
					return
				}
				out[i] = tok
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
