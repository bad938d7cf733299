package main

import (
	"fmt"
	"runtime"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// tokenPools are the pre-built requests of the scenarios.
type tokenPools struct {
	warmJWT, warmOpaque  []*authv3.CheckRequest
	coldES256, coldRS256 [][]*authv3.CheckRequest // one pool per transport
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
	for _, tr := range o.transports {
		var es, rs []*authv3.CheckRequest
		if o.scenarioSet["cold-es256-es256"] {
			if es, err = b.signPool("ES256", "cold-"+tr, o.coldES256); err != nil {
				return nil, err
			}
		}
		if o.scenarioSet["cold-rs256-eddsa"] {
			if rs, err = b.signPool("RS256", "cold-"+tr, o.coldRS256); err != nil {
				return nil, err
			}
		}
		p.coldES256 = append(p.coldES256, es)
		p.coldRS256 = append(p.coldRS256, rs)
	}
	return p, nil
}

// signPool signs n tokens with alg in parallel and builds their requests.
func (b *benchRun) signPool(alg, prefix string, n int) ([]*authv3.CheckRequest, error) {
	out := make([]*authv3.CheckRequest, n)
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
				out[i] = checkRequest(tok, i)
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
