package server

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestReloadClosesSupersededPending: a reloaded pipeline still waiting for
// its keys that a later reload supersedes is given up whole: the key sets
// only it used stop at once. Before, they (and its revocation handlers)
// ran until some later swap, one more for every superseded reload.
func TestReloadClosesSupersededPending(t *testing.T) {
	h := startHarnessWith(t, baseConfig, nil, nil, func(o *Options) { o.ReadyTimeout = 100 * time.Millisecond })
	h.waitReady()
	serving := h.srv.Authz().Pipeline()
	base := h.srv.keySets.Running()
	tests := []struct {
		name string
		path string // the reload's jwks_url path: none is served, so it waits
	}{
		{name: "first pending", path: "/down-1.json"},
		{name: "supersedes the first", path: "/down-2.json"},
		{name: "supersedes the second", path: "/down-3.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := strings.ReplaceAll(baseConfig, "{{ISSUER}}/jwks.json", "{{ISSUER}}"+tt.path)
			h.write("config.yaml", strings.ReplaceAll(cfg, "{{ISSUER}}", h.is.URL()))
			if err := h.srv.Reload(context.Background(), false); err != nil {
				t.Fatalf("reload: %v", err)
			}
			if h.srv.Authz().Pipeline() != serving {
				t.Fatal("a pipeline without keys replaced the serving one")
			}
			// The serving pipeline's set and the one pending's; none of a
			// superseded pending pipeline.
			if got := h.srv.keySets.Running(); got != base+1 {
				t.Errorf("key sets running = %d, want %d", got, base+1)
			}
		})
	}
}
