package jwtverify

import (
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
)

// flatClaimsCases are claims segments, each with whether decodeFlatClaims
// must decode it itself (true) or leave it to json.Unmarshal.
var flatClaimsCases = []struct {
	name string
	in   string
	fast bool
}{
	{"typical access token", `{"aud":"api.example.com","client_id":"c","exp":1796346000,"iat":1796342400,"iss":"https://as.example","jti":"j1","scope":"orders:read profile","sub":"alice"}`, true},
	{"empty object", `{}`, true},
	{"whitespace everywhere", " \t\r\n{ \"a\" :\n1 , \"b\"\t:\r[ 1 , \"x\" ] }\n ", true},
	{"audience array", `{"aud":["a","b"],"sub":"x"}`, true},
	{"empty array", `{"groups":[]}`, true},
	{"literals", `{"a":true,"b":false,"c":null,"d":[true,false,null]}`, true},
	{"numbers", `{"a":0,"b":-0,"c":1.5,"d":-12e3,"e":1E+2,"f":2.5e-3,"g":9007199254740993,"h":123456789012345678901234567890}`, true},
	{"non-ASCII", `{"name":"Zoë Ünïcode 日本","sub":"ß"}`, true},
	{"empty name and value", `{"":""}`, true},
	{"an unregistered name", `{"https://example.com/claims/tenant":"acme"}`, true},

	{"escaped quote", `{"sub":"a\"b"}`, false},
	{"escaped unicode", `{"sub":"\u00e9"}`, false},
	{"escaped name", `{"s\u0075b":"x"}`, false},
	{"nested object", `{"cnf":{"jkt":"abc"}}`, false},
	{"object in array", `{"a":[{"b":1}]}`, false},
	{"nested array", `{"a":[[1]]}`, false},
	{"duplicate names", `{"iss":"a","iss":"b"}`, false},
	{"duplicate unregistered names", `{"x":1,"x":1}`, false},
	{"invalid UTF-8", "{\"sub\":\"\xff\"}", false},
	{"invalid UTF-8 in a name", "{\"\xc3\":1}", false},
	{"control character", "{\"sub\":\"a\tb\"}", false},
	{"leading zero", `{"a":01}`, false},
	{"bare minus", `{"a":-}`, false},
	{"trailing dot", `{"a":1.}`, false},
	{"leading dot", `{"a":.5}`, false},
	{"exponent without digits", `{"a":1e}`, false},
	{"plus sign", `{"a":+1}`, false},
	{"out of range", `{"a":1e400}`, false},
	{"NaN", `{"a":NaN}`, false},
	{"trailing comma", `{"a":1,}`, false},
	{"trailing comma in array", `{"a":[1,]}`, false},
	{"missing colon", `{"a" 1}`, false},
	{"single quotes", `{'a':1}`, false},
	{"unquoted name", `{a:1}`, false},
	{"truncated", `{"a":"b`, false},
	{"truncated literal", `{"a":tru`, false},
	{"literal with a tail", `{"a":truex}`, false},
	{"trailing data", `{"a":1}x`, false},
	{"two objects", `{}{}`, false},
	{"an array", `[1]`, false},
	{"a string", `"x"`, false},
	{"empty", ``, false},
	{"BOM", "\xef\xbb\xbf{}", false},
}

// decodeClaimsLike is decodeClaims' decoding: the fast path, else
// json.Unmarshal on a fresh map.
func decodeClaimsLike(in []byte) (map[string]any, bool, error) {
	m := map[string]any{}
	if decodeFlatClaims(in, m) {
		return m, true, nil
	}
	m = map[string]any{}
	err := json.Unmarshal(in, &m)
	return m, false, err
}

func TestDecodeFlatClaimsAgreesWithJSON(t *testing.T) {
	for _, tc := range flatClaimsCases {
		t.Run(tc.name, func(t *testing.T) {
			want := map[string]any{}
			wantErr := json.Unmarshal([]byte(tc.in), &want)
			got, fast, err := decodeClaimsLike([]byte(tc.in))
			if fast != tc.fast {
				t.Errorf("decoded by the fast path: %v, want %v", fast, tc.fast)
			}
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, json.Unmarshal's %v", err, wantErr)
			}
			if wantErr == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("decoded %#v, json.Unmarshal %#v", got, want)
			}
		})
	}
}

// Registered claim names are interned: decoding them allocates no name.
func TestDecodeFlatClaimsInternsRegisteredNames(t *testing.T) {
	in := []byte(`{"iss":1,"sub":2,"aud":3,"exp":4,"iat":5,"scope":6,"client_id":7}`)
	m := make(map[string]any, 8)
	allocs := testing.AllocsPerRun(100, func() {
		clear(m)
		if !decodeFlatClaims(in, m) {
			t.Fatal("not decoded")
		}
	})
	// One boxed float64 per member; no name, no map growth.
	if allocs > 7 {
		t.Errorf("%.0f allocations for 7 numeric members, want at most 7", allocs)
	}
}

// FuzzFlatClaims: whatever the input, the fast path decodes only what
// json.Unmarshal accepts, into an equal map.
func FuzzFlatClaims(f *testing.F) {
	for _, tc := range flatClaimsCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m := map[string]any{}
		if !decodeFlatClaims(in, m) {
			return
		}
		want := map[string]any{}
		if err := json.Unmarshal(in, &want); err != nil {
			t.Fatalf("fast path accepted %q, which json.Unmarshal refuses: %v", in, err)
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("%q: fast path %#v, json.Unmarshal %#v", in, m, want)
		}
	})
}

// BenchmarkDecodeClaims: the claims of the load tool's tokens, decoded as
// decodeClaims does and by json.Unmarshal alone.
func BenchmarkDecodeClaims(b *testing.B) {
	cb := []byte(`{"aud":"api.example.com","client_id":"load-client","email":"user-123@example.com","exp":1796346000,"iat":1796342400,"iss":"http://127.0.0.1:41237","jti":"user-123","scope":"orders:read","sub":"user-123","tenant":"acme"}`)
	hint := strings.Count(string(cb), `":`)
	b.Run("flat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !decodeFlatClaims(cb, make(map[string]any, hint)) {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m := make(map[string]any, hint)
			if err := json.Unmarshal(cb, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
