package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestColdVerdict(t *testing.T) {
	tests := []struct {
		name                  string
		check, floor, crypto  time.Duration
		wantMet, wantContains string
	}{
		{name: "within", check: 100 * time.Microsecond, floor: 24 * time.Microsecond, crypto: 60 * time.Microsecond,
			wantMet: ": met", wantContains: "= 102µs"},
		{name: "exactly at the limit", check: 102 * time.Microsecond, floor: 24 * time.Microsecond, crypto: 60 * time.Microsecond,
			wantMet: ": met", wantContains: "1.30 × crypto beyond the floor"},
		{name: "over", check: 112 * time.Microsecond, floor: 24 * time.Microsecond, crypto: 60 * time.Microsecond,
			wantMet: ": not met", wantContains: "cold CPU/Check 112µs vs floor 24µs + 1.3 × crypto 60µs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := coldVerdict(tc.check, tc.floor, tc.crypto)
			if !strings.Contains(got, tc.wantMet+" (") || !strings.Contains(got, tc.wantContains) {
				t.Errorf("coldVerdict = %q, want %q and %q", got, tc.wantMet, tc.wantContains)
			}
		})
	}
}

func TestColdMedian(t *testing.T) {
	tests := []struct {
		name   string
		ratios []float64
		want   string
	}{
		{name: "odd count, median within", ratios: []float64{1.45, 1.20, 1.25},
			want: "median of 3 rounds (1.45, 1.20, 1.25): 1.25 × crypto beyond the floor, target ≤ 1.3: met"},
		{name: "one slow round does not decide", ratios: []float64{1.20, 1.90, 1.28},
			want: "median of 3 rounds (1.20, 1.90, 1.28): 1.28 × crypto beyond the floor, target ≤ 1.3: met"},
		{name: "even count averages the middle two", ratios: []float64{1.40, 1.30, 1.20, 1.50},
			want: "median of 4 rounds (1.40, 1.30, 1.20, 1.50): 1.35 × crypto beyond the floor, target ≤ 1.3: not met"},
		{name: "over", ratios: []float64{1.31, 1.33, 1.29},
			want: "median of 3 rounds (1.31, 1.33, 1.29): 1.31 × crypto beyond the floor, target ≤ 1.3: not met"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := coldMedian(tc.ratios); got != tc.want {
				t.Errorf("coldMedian = %q\nwant          %q", got, tc.want)
			}
		})
	}
}

func TestParseCryptoOutput(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    time.Duration
		wantErr bool
	}{
		{name: "result line", out: "runtime of crypto: GOGC=400\ncrypto: 41024 rounds, 73µs CPU per round (73125 ns)\n", want: 73125},
		{name: "after the ready line of turns", out: "runtime of crypto: GOGC=400\ncrypto: ready\ncrypto: 900 rounds, 120µs CPU per round (120311 ns)\n", want: 120311},
		{name: "ready, then nothing", out: "crypto: ready\n", wantErr: true},
		{name: "no result", out: "crypto: open x: no such file\n", wantErr: true},
		{name: "zero", out: "crypto: 0 rounds, 0µs CPU per round (0 ns)\n", wantErr: true},
		{name: "empty", out: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCryptoOutput(tc.out)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseCryptoOutput = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseJWTLookups(t *testing.T) {
	exp := `# HELP tokentailor_cache_lookups_total Cache lookups by cache and result (hit, miss).
tokentailor_cache_lookups_total{cache="jwt",result="hit"} 12
tokentailor_cache_lookups_total{cache="jwt",result="miss"} 30001
tokentailor_cache_lookups_total{cache="mint",result="hit"} 999
`
	hits, misses, err := parseJWTLookups(strings.NewReader(exp))
	if err != nil || hits != 12 || misses != 30001 {
		t.Errorf("parseJWTLookups = %v, %v, %v; want 12, 30001, nil", hits, misses, err)
	}
}

// TestCryptoRound builds the crypto sub-mode's round from files as bench
// writes them (a real token of the issuer double, its public key, a minted
// token and a mint key of each kind) and checks that a token signed by
// another key does not pass for one.
func TestCryptoRound(t *testing.T) {
	iss, err := newIssuer(time.Now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, inAlg, kind string
		pubAlg            string
		wantErr           bool
	}{
		{name: "RS256 in, EdDSA out", inAlg: "RS256", kind: "eddsa", pubAlg: "RS256"},
		{name: "ES256 in, ES256 out", inAlg: "ES256", kind: "es256", pubAlg: "ES256"},
		{name: "wrong public key", inAlg: "ES256", kind: "eddsa", pubAlg: "EdDSA", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := iss.sign(tc.inAlg, "alice")
			if err != nil {
				t.Fatal(err)
			}
			pub, err := iss.publicPEM(tc.pubAlg)
			if err != nil {
				t.Fatal(err)
			}
			key := filepath.Join(dir, tc.kind+".pem")
			if err := writeKey(key, tc.kind); err != nil {
				t.Fatal(err)
			}
			minted := write("minted", []byte(tok)) // any compact JWS of the right size will do
			round, err := loadCryptoRound(write("in", []byte(tok)), write("pub", pub), minted, key)
			if tc.wantErr {
				if err == nil {
					t.Fatal("a token under another key verified")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n, cpu, err := timeCrypto(context.Background(), round, 20*time.Millisecond, nil, nil)
			if err != nil || n == 0 || cpu <= 0 {
				t.Errorf("timeCrypto = %d rounds, %v CPU, %v", n, cpu, err)
			}
		})
	}
}

// TestMain lets the test binary stand in for tokentailor-load when a test
// starts it as a child (os.Executable), as bench starts its sub-modes.
func TestMain(m *testing.M) {
	if os.Getenv("TOKENTAILOR_LOAD_AS_MAIN") == "1" {
		os.Exit(dispatch(context.Background(), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// The crypto sub-mode in turns: stopped between them, its CPU time stands
// still; its result counts only the rounds of its turns (and its last batch).
func TestCryptoChildTakesTurns(t *testing.T) {
	t.Setenv("TOKENTAILOR_LOAD_AS_MAIN", "1")
	iss, err := newIssuer(time.Now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tok, err := iss.sign("ES256", "alice")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := iss.publicPEM("ES256")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join(dir, "in"), filepath.Join(dir, "pub"), filepath.Join(dir, "minted"), filepath.Join(dir, "key.pem")}
	for i, b := range [][]byte{[]byte(tok), pub, []byte(tok)} {
		if err := os.WriteFile(files[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeKey(files[3], "es256"); err != nil {
		t.Fatal(err)
	}
	c, err := startCrypto(context.Background(), nil, nil, files)
	if err != nil {
		t.Fatal(err)
	}
	stopped, err := processCPU(c.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if still, _ := processCPU(c.cmd.Process.Pid); still-stopped > 5*time.Millisecond {
		t.Errorf("a stopped crypto child used %v of CPU in 200 ms", still-stopped)
	}
	for range 3 {
		if err := c.turn(50 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	per, err := c.finish()
	if err != nil {
		t.Fatal(err)
	}
	if per <= 0 || per > 50*time.Millisecond {
		t.Errorf("%v CPU per round", per)
	}
}
