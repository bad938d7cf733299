package response

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tokentailor/tokentailor/extauthz"
)

// TestAllowForIsAllow is the rule AllowFor rests on, for all inputs: the
// answer it gives back, kept or not, equals the one Allow builds for the
// same grant, token, credential and sent headers; and an answer is given
// back again only for exactly those (a kept answer is not Allow's when
// anything differs). A stream of random Checks of one cached
// principal (routes, tokens, credential headers, and which of the headers
// an answer may remove the client sent) is judged both ways. The encoding
// given with an answer is that answer's, byte for byte, and every kept
// answer has one. AllowKept, given an answer kept at some earlier Check
// (Kept), answers the same.
func TestAllowForIsAllow(t *testing.T) {
	encode := proto.MarshalOptions{Deterministic: true}.Marshal
	b := &Builder{
		Realm: "r", InternalHeaders: []string{"x-internal-a", "x-internal-b", "authorization"},
		CredentialHeader: "authorization", ConsumedHeaders: []string{"dpop"},
		Encode: func(r *authv3.CheckResponse) ([]byte, error) { return encode(r) },
	}
	routes := []any{new(int), new(int)}
	grants := []*extauthz.Grant{
		{Route: "a", Mode: extauthz.ModeMint, Header: "x-internal-a", Prefix: "Bearer ", StripCredential: true},
		{Route: "b", Mode: extauthz.ModeExchange, Header: "authorization", Prefix: "Bearer ", StripCredential: true},
	}
	tokens := []extauthz.Token{{Value: "eyJ.one.sig"}, {Value: "eyJ.two.sig"}, {Value: "bad\r\nvalue"}}
	creds := []extauthz.Credential{
		{Raw: "c", Kind: extauthz.KindJWT, Header: "authorization"},
		{Raw: "c", Kind: extauthz.KindJWT, Header: "txn-token"},
	}
	optional := []string{"authorization", "x-internal-a", "x-internal-b", "dpop", "accept"}
	cached := &extauthz.Principal{Scopes: []string{"s"}, Claims: map[string]any{}, Memo: new(extauthz.Memo)}
	rng := rand.New(rand.NewPCG(1, 2))
	var checks, kept int
	prev := map[string]any{}
	held := map[int]*Kept{}
	for i := range 5000 {
		p := *cached
		r := rng.IntN(len(grants))
		if _, ok := p.KeptGrant(routes[r]); !ok {
			p.KeepGrant(routes[r], grants[r])
		}
		g, tok, cred := grants[r], tokens[rng.IntN(len(tokens))], creds[rng.IntN(len(creds))]
		sent := map[string]string{}
		for j, h := range optional {
			if rng.IntN(3) == 0 || (j == 0 && cred.Header == "authorization") {
				sent[h] = "v"
			}
		}
		got, wire := b.AllowFor(&p, g, tok, cred, sent)
		want := b.Allow(g, tok, cred, sent)
		if !proto.Equal(got, want) {
			t.Fatalf("Check %d: AllowFor answered\n%v\nAllow answers\n%v", i, got, want)
		}
		// AllowKept with an answer kept for the route at some earlier
		// Check (Kept, held elsewhere as a warm answer holds it) is the
		// same rule.
		if gotK, wireK := b.AllowKept(held[r], &p, g, tok, cred, sent); !proto.Equal(gotK, want) {
			t.Fatalf("Check %d: AllowKept answered\n%v\nAllow answers\n%v", i, gotK, want)
		} else if wireK != nil {
			if enc, _ := encode(gotK); !bytes.Equal(wireK, enc) {
				t.Fatalf("Check %d: the encoding AllowKept gave is not its answer's", i)
			}
		}
		if rng.IntN(8) == 0 {
			held[r] = b.Kept(&p, g)
		}
		if (wire != nil) != (got.GetOkResponse() != nil) {
			t.Fatalf("Check %d: encoding given = %v for an answer that allows = %v", i, wire != nil, got.GetOkResponse() != nil)
		}
		if wire != nil {
			if enc, _ := encode(got); !bytes.Equal(wire, enc) {
				t.Fatalf("Check %d: the encoding given is not the answer's", i)
			}
		}
		key := fmt.Sprint(r, tok.Value, cred.Header, sentOf(sent, optional))
		if prevAnswer, seen := prev[key]; seen && prevAnswer == any(got) {
			kept++
		}
		if got.GetOkResponse() != nil {
			prev = map[string]any{key: got} // only the last answer is kept
		}
		checks++
	}
	if kept == 0 {
		t.Fatalf("no answer of %d was given back kept", checks)
	}
}

func sentOf(sent map[string]string, names []string) []string {
	var out []string
	for _, h := range names {
		if _, ok := sent[h]; ok {
			out = append(out, h)
		}
	}
	return out
}

// TestAllowForKeepsOnlyForACachedPrincipal: a fresh principal, or one
// without a Memo, gets an answer of its own each time.
func TestAllowForKeepsOnlyForACachedPrincipal(t *testing.T) {
	b := NewBuilder("r")
	g := &extauthz.Grant{Header: "authorization", Prefix: "Bearer ", StripCredential: true}
	tok := extauthz.Token{Value: "eyJ.internal.sig"}
	cred := extauthz.Credential{Raw: "c", Header: "authorization"}
	route := new(int)
	cached := &extauthz.Principal{Memo: new(extauthz.Memo)}
	cached.KeepGrant(route, g)
	other := &extauthz.Principal{Memo: new(extauthz.Memo)}
	other.KeepGrant(route, g)
	fresh := *other // a fresh principal does not keep (whatever its Memo)
	fresh.Fresh = true
	cases := []struct {
		name     string
		p        *extauthz.Principal
		wantSame bool
	}{
		{"cached", cached, true},
		{"fresh", &fresh, false},
		{"no memo", &extauthz.Principal{}, false},
	}
	for _, c := range cases {
		first, _ := b.AllowFor(c.p, g, tok, cred, nil)
		second, _ := b.AllowFor(c.p, g, tok, cred, nil)
		if (first == second) != c.wantSame {
			t.Errorf("%s: same answer = %v, want %v", c.name, first == second, c.wantSame)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _, _ = b.AllowFor(cached, g, tok, cred, nil) }); a != 0 {
		t.Errorf("a kept answer costs %v allocs, want 0", a)
	}
}

// TestAllowWithManyInternalHeaders: past the 63 headers a mask holds, Allow
// reads the sent headers itself and AllowFor keeps nothing; a client-sent
// internal header is removed all the same (invariant 3).
func TestAllowWithManyInternalHeaders(t *testing.T) {
	var names []string
	for i := range 80 {
		names = append(names, fmt.Sprintf("x-internal-%02d", i))
	}
	b := &Builder{Realm: "r", InternalHeaders: names, CredentialHeader: "authorization"}
	g := &extauthz.Grant{Header: "x-internal-00", Prefix: "Bearer "}
	tok := extauthz.Token{Value: "eyJ.internal.sig"}
	cred := extauthz.Credential{Raw: "c", Header: "authorization"}
	sent := map[string]string{"x-internal-00": "forged", "x-internal-70": "forged", "x-internal-79": "forged"}
	p := &extauthz.Principal{Memo: new(extauthz.Memo)}
	p.KeepGrant(new(int), g)
	kept, wire := b.AllowFor(p, g, tok, cred, sent)
	if wire != nil {
		t.Error("an encoding was kept although the mask cannot hold the headers")
	}
	for _, resp := range []*authv3.CheckResponse{b.Allow(g, tok, cred, sent), kept} {
		got := resp.GetOkResponse().GetHeadersToRemove()
		if !slices.Equal(got, []string{"x-internal-70", "x-internal-79"}) {
			t.Errorf("headers_to_remove = %v, want the two other internal headers sent", got)
		}
	}
	if first, _ := b.AllowFor(p, g, tok, cred, sent); first == kept {
		t.Error("an answer was kept although the mask cannot hold the headers")
	}
}

// TestAllowForEncodesOnlyWhatItKeeps: Encode runs once per kept answer and
// never for an answer that is not kept (a fresh principal); an answer whose
// encoding failed is kept without one, and the server encodes it then.
func TestAllowForEncodesOnlyWhatItKeeps(t *testing.T) {
	calls, fail := 0, false
	b := NewBuilder("r")
	b.Encode = func(r *authv3.CheckResponse) ([]byte, error) {
		calls++
		if fail {
			return nil, fmt.Errorf("refused")
		}
		return proto.Marshal(r)
	}
	g := &extauthz.Grant{Mode: extauthz.ModeMint, Header: "authorization", Prefix: "Bearer "}
	cred := extauthz.Credential{Raw: "c", Header: "authorization"}
	route := new(int)

	fresh := &extauthz.Principal{Memo: new(extauthz.Memo), Fresh: true}
	fresh.KeepGrant(route, g)
	if _, wire := b.AllowFor(fresh, g, extauthz.Token{Value: "eyJ.a.b"}, cred, nil); wire != nil || calls != 0 {
		t.Fatalf("fresh principal: wire %v after %d encodings, want none", wire != nil, calls)
	}

	cached := &extauthz.Principal{Memo: new(extauthz.Memo)}
	cached.KeepGrant(route, g)
	tok := extauthz.Token{Value: "eyJ.b.c"}
	first, w1 := b.AllowFor(cached, g, tok, cred, nil)
	second, w2 := b.AllowFor(cached, g, tok, cred, nil)
	if calls != 1 || w1 == nil || &w1[0] != &w2[0] || first != second {
		t.Fatalf("cached principal: %d encodings, same answer %v, same encoding %v; want 1, true, true", calls, first == second, w1 != nil && &w1[0] == &w2[0])
	}

	fail = true
	renewed := extauthz.Token{Value: "eyJ.c.d"} // a renewed minted token: a new answer
	third, w3 := b.AllowFor(cached, g, renewed, cred, nil)
	fourth, w4 := b.AllowFor(cached, g, renewed, cred, nil)
	if calls != 2 || w3 != nil || w4 != nil || third != fourth || third == first {
		t.Fatalf("failed encoding: %d encodings, wires %v %v, kept %v; want 2, none, kept", calls, w3 != nil, w4 != nil, third == fourth)
	}
}
