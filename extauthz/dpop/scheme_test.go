package dpop

import (
	"errors"
	"fmt"
	"testing"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name       string
		mode       Mode
		scheme     string
		bound      bool
		wantVerify bool
		wantErr    error
	}{
		{name: "off: bearer", mode: ModeOff, scheme: "Bearer"},
		{name: "off: bound bearer is not looked at", mode: ModeOff, scheme: "Bearer", bound: true},
		{name: "off: DPoP scheme refused", mode: ModeOff, scheme: "DPoP", bound: true, wantErr: ErrKeyBinding},
		{name: "optional: unbound bearer", mode: ModeOptional, scheme: "Bearer"},
		{name: "optional: bound bearer is a downgrade", mode: ModeOptional, scheme: "bearer", bound: true, wantErr: ErrBearerDowngrade},
		{name: "optional: DPoP verifies", mode: ModeOptional, scheme: "DPoP", bound: true, wantVerify: true},
		{name: "optional: DPoP scheme, unbound: verify (then key binding fails)", mode: ModeOptional, scheme: "dpop", wantVerify: true},
		{name: "required: unbound bearer", mode: ModeRequired, scheme: "Bearer", wantErr: ErrDPoPRequired},
		{name: "required: bound bearer is a downgrade", mode: ModeRequired, scheme: "Bearer", bound: true, wantErr: ErrBearerDowngrade},
		{name: "required: DPoP verifies", mode: ModeRequired, scheme: "DPoP", bound: true, wantVerify: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verify, err := Decide(tt.mode, tt.scheme, tt.bound)
			if verify != tt.wantVerify || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Decide = %v, %v; want %v, %v", verify, err, tt.wantVerify, tt.wantErr)
			}
		})
	}
}

func TestJKT(t *testing.T) {
	tests := []struct {
		name      string
		claims    map[string]any
		want      string
		wantBound bool
		wantErr   bool
	}{
		{name: "no cnf", claims: map[string]any{"sub": "a"}},
		{name: "cnf with x5t#S256 only", claims: map[string]any{"cnf": map[string]any{"x5t#S256": "x"}}},
		{name: "jkt", claims: map[string]any{"cnf": map[string]any{"jkt": "abc"}}, want: "abc", wantBound: true},
		{name: "cnf not an object", claims: map[string]any{"cnf": "abc"}, wantBound: true, wantErr: true},
		{name: "jkt not a string", claims: map[string]any{"cnf": map[string]any{"jkt": 1}}, wantBound: true, wantErr: true},
		{name: "jkt empty", claims: map[string]any{"cnf": map[string]any{"jkt": ""}}, wantBound: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bound, err := JKT(tt.claims)
			if got != tt.want || bound != tt.wantBound || (err != nil) != tt.wantErr {
				t.Fatalf("JKT = %q, %v, %v", got, bound, err)
			}
			if err != nil && !errors.Is(err, ErrKeyBinding) {
				t.Errorf("error %v is not ErrKeyBinding", err)
			}
		})
	}
}

func TestChallengeFor(t *testing.T) {
	v := newVerifier(t, Options{Algorithms: []string{"ES256", "EdDSA"}, Nonces: testNonces(t)})
	tests := []struct {
		name      string
		err       error
		realm     string
		want      string
		wantNonce bool
		wantOK    bool
	}{
		{name: "proof rule", err: fmt.Errorf("check: %w", ErrProofSignature), want: `DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"`, wantOK: true},
		{name: "with realm", err: ErrProofMissing, realm: `api"x`, want: `DPoP realm="apix", error="invalid_dpop_proof", algs="ES256 EdDSA"`, wantOK: true},
		{name: "nonce", err: ErrUseNonce, want: `DPoP error="use_dpop_nonce", algs="ES256 EdDSA"`, wantNonce: true, wantOK: true},
		{name: "key binding", err: ErrKeyBinding, want: `DPoP error="invalid_token", algs="ES256 EdDSA"`, wantOK: true},
		{name: "downgrade", err: ErrBearerDowngrade, realm: "api", want: `Bearer realm="api", error="invalid_token", DPoP algs="ES256 EdDSA"`, wantOK: true},
		{name: "required", err: ErrDPoPRequired, want: `Bearer error="invalid_token", DPoP algs="ES256 EdDSA"`, wantOK: true},
		{name: "not DPoP's", err: errors.New("other")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := v.ChallengeFor(tt.err, tt.realm)
			if ok != tt.wantOK || c.WWWAuthenticate != tt.want || (c.Nonce != "") != tt.wantNonce {
				t.Fatalf("ChallengeFor = %+v, %v; want %q nonce %v", c, ok, tt.want, tt.wantNonce)
			}
			if c.Nonce != "" && !testNonces(t).Valid(c.Nonce) {
				t.Error("the challenge's nonce is not valid")
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeOff, "off": ModeOff, "optional": ModeOptional, "required": ModeRequired} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("on"); err == nil {
		t.Error(`ParseMode("on") accepted`)
	}
}
