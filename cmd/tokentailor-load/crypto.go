package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokentailor/tokentailor/extauthz/mint"
)

// cryptoCmd times, in this process, the cryptography a cold Check cannot
// avoid: SHA-256 of the incoming token (the caches' key), verification of
// its signature with its issuer's public key, and signing a token of the
// size tokentailor minted with tokentailor's own mint key. bench runs it
// under the server's taskset prefix and runtime settings, so "the
// cryptography alone" of issue 14's cold target is measured on the server's
// CPU, the same way as the server's CPU per Check (CPU time, not wall time).
// It prints one line, "crypto: N rounds, D CPU per round (NS ns)".
func cryptoCmd(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("crypto", flag.ContinueOnError)
	token := fs.String("token", "", "file holding an incoming JWT")
	pubkey := fs.String("pubkey", "", "PEM file of its issuer's public key (PKIX)")
	minted := fs.String("minted", "", "file holding a token tokentailor minted for it")
	key := fs.String("key", "", "tokentailor's mint key (PEM, PKCS#8)")
	d := fs.Duration("duration", 3*time.Second, "how long to time the loop; 0: print \"crypto: ready\" after the warm-up and time until stdin is closed (bench stops and continues the process for its turns)")
	gcPercent := fs.Int("gc-percent", 400, "GOGC to run with (an environment GOGC wins)")
	memLimit := fs.Int64("memory-limit", -1, "soft memory limit in bytes, -1 for none (an environment GOMEMLIMIT wins)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fmt.Printf("runtime of crypto: %s\n", tuneFloorRuntime(*gcPercent, *memLimit))
	round, err := loadCryptoRound(*token, *pubkey, *minted, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crypto:", err)
		return 1
	}
	var ready func()
	var done chan struct{}
	if *d == 0 {
		ready = func() { fmt.Println("crypto: ready") }
		done = make(chan struct{})
		go func() {
			io.Copy(io.Discard, os.Stdin)
			close(done)
		}()
	}
	n, cpu, err := timeCrypto(ctx, round, *d, ready, done)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crypto:", err)
		return 1
	}
	per := cpu / time.Duration(n)
	fmt.Printf("crypto: %d rounds, %s CPU per round (%d ns)\n", n, fmtDur(per), per.Nanoseconds())
	return 0
}

// timeCrypto runs round after a short warm-up (then calls ready, when not
// nil) for d, or when d is 0 until done is closed, and returns how many
// rounds ran and the process CPU time they took.
func timeCrypto(ctx context.Context, round func() error, d time.Duration, ready func(), done <-chan struct{}) (int, time.Duration, error) {
	for range 50 {
		if err := round(); err != nil {
			return 0, 0, err
		}
	}
	if ready != nil {
		ready()
	}
	n := 0
	cpu0 := selfCPU()
	end := time.Now().Add(d)
	more := func() bool {
		if d > 0 {
			return time.Now().Before(end)
		}
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	for more() && ctx.Err() == nil {
		for range 16 {
			if err := round(); err != nil {
				return 0, 0, err
			}
		}
		n += 16
	}
	return n, selfCPU() - cpu0, ctx.Err()
}

// loadCryptoRound reads the files and returns one round of the cryptography:
// what jwtverify and mint call for a new token, the same library calls with
// the same keys.
func loadCryptoRound(tokenFile, pubFile, mintedFile, keyFile string) (func() error, error) {
	tok, err := readOne(tokenFile)
	if err != nil {
		return nil, err
	}
	out, err := readOne(mintedFile)
	if err != nil {
		return nil, err
	}
	pubPEM, err := os.ReadFile(pubFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(pubPEM)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", pubFile)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pubFile, err)
	}
	verify, err := jwsVerifier(tok, pub)
	if err != nil {
		return nil, err
	}
	k, err := mint.LoadKey(keyFile, "bench")
	if err != nil {
		return nil, err
	}
	dot := strings.LastIndexByte(out, '.')
	if dot < 0 {
		return nil, errors.New("the minted token is not a compact JWS")
	}
	sign, err := jwsSigner(k, []byte(out[:dot]))
	if err != nil {
		return nil, err
	}
	return func() error {
		_ = sha256.Sum256([]byte(tok))
		if err := verify(); err != nil {
			return err
		}
		return sign()
	}, nil
}

// readOne returns a file's content without surrounding white space.
func readOne(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

// jwsVerifier returns a function that verifies tok's signature with pub by
// golang-jwt's signing method for its alg, as jwtverify does.
func jwsVerifier(tok string, pub crypto.PublicKey) (func() error, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("the incoming token is not a compact JWS")
	}
	hdr, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, err
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil {
		return nil, err
	}
	method := jwt.GetSigningMethod(h.Alg)
	if method == nil {
		return nil, fmt.Errorf("unknown alg %q", h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	input := tok[:len(parts[0])+1+len(parts[1])]
	if err := method.Verify(input, sig, pub); err != nil {
		return nil, fmt.Errorf("the incoming token does not verify: %w", err)
	}
	return func() error { return method.Verify(input, sig, pub) }, nil
}

// jwsSigner returns a function that signs input with k as mint does: Ed25519
// over the message, ECDSA and RSA over its SHA-256 (the ECDSA DER to raw
// conversion left out: it is not cryptography and costs next to nothing).
func jwsSigner(k *mint.Key, input []byte) (func() error, error) {
	s := k.Signer()
	switch k.Alg {
	case mint.AlgEdDSA:
		return func() error { _, err := s.Sign(nil, input, crypto.Hash(0)); return err }, nil
	case mint.AlgES256, mint.AlgRS256:
		return func() error {
			d := sha256.Sum256(input)
			_, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
			return err
		}, nil
	}
	return nil, fmt.Errorf("unsupported mint alg %q", k.Alg)
}

// runCrypto runs the crypto sub-mode as a child under prefix (the servers'
// taskset) with the floor's runtime flags and returns its CPU per round.
func runCrypto(ctx context.Context, prefix, runtimeFlags []string, files []string, d time.Duration) (time.Duration, error) {
	argv, err := cryptoArgv(prefix, runtimeFlags, files, d)
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("crypto sub-mode: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return parseCryptoOutput(out.String())
}

// cryptoChild is the crypto sub-mode run in turns: started, warmed up and
// stopped (SIGSTOP) by startCrypto, continued for each of its turns, and
// asked for its result by finish.
type cryptoChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	rest   strings.Builder // what it printed, read by this side
	stderr bytes.Buffer    // written by exec until Wait returns
}

// startCrypto starts the crypto sub-mode like runCrypto, with -duration 0,
// waits for its warm-up and stops it.
func startCrypto(ctx context.Context, prefix, runtimeFlags []string, files []string) (*cryptoChild, error) {
	argv, err := cryptoArgv(prefix, runtimeFlags, files, 0)
	if err != nil {
		return nil, err
	}
	c := &cryptoChild{cmd: exec.CommandContext(ctx, argv[0], argv[1:]...)}
	c.cmd.Stderr = &c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("crypto sub-mode: %w", err)
	}
	c.out = bufio.NewReader(stdout)
	for {
		line, err := c.out.ReadString('\n')
		c.rest.WriteString(line)
		if strings.TrimSpace(line) == "crypto: ready" {
			break
		}
		if err != nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
			return nil, fmt.Errorf("crypto sub-mode never got ready: %s", strings.TrimSpace(c.rest.String()+c.stderr.String()))
		}
	}
	if err := c.pause(); err != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		return nil, err
	}
	return c, nil
}

// pause stops the process; its CPU time stands still until resume.
func (c *cryptoChild) pause() error { return c.cmd.Process.Signal(syscall.SIGSTOP) }

// resume continues the process.
func (c *cryptoChild) resume() error { return c.cmd.Process.Signal(syscall.SIGCONT) }

// turn lets the process run for d.
func (c *cryptoChild) turn(d time.Duration) error {
	if err := c.resume(); err != nil {
		return err
	}
	time.Sleep(d)
	return c.pause()
}

// finish continues the process, closes its stdin and returns its CPU time
// per round since the warm-up. Its last batch of rounds runs after the last
// turn: a few milliseconds against the seconds of its turns.
func (c *cryptoChild) finish() (time.Duration, error) {
	c.resume()
	c.stdin.Close()
	rest, _ := io.ReadAll(c.out)
	c.rest.Write(rest)
	if err := c.cmd.Wait(); err != nil {
		return 0, fmt.Errorf("crypto sub-mode: %w: %s", err, strings.TrimSpace(c.rest.String()+c.stderr.String()))
	}
	return parseCryptoOutput(c.rest.String())
}

// cryptoArgv is the command line of the crypto sub-mode: this binary under
// prefix (taskset), with runtimeFlags, the files (token, public key, minted
// token, mint key) and -duration d.
func cryptoArgv(prefix, runtimeFlags, files []string, d time.Duration) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := append(append(append([]string(nil), prefix...), self, "crypto"), runtimeFlags...)
	return append(argv, "-token", files[0], "-pubkey", files[1], "-minted", files[2], "-key", files[3], "-duration", d.String()), nil
}

// parseCryptoOutput finds the ns figure of the crypto sub-mode's result line.
func parseCryptoOutput(s string) (time.Duration, error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "crypto: ") {
			continue
		}
		i := strings.LastIndexByte(line, '(')
		j := strings.LastIndex(line, " ns)")
		if i < 0 || j < i {
			continue // "crypto: ready"
		}
		ns, err := strconv.ParseInt(line[i+1:j], 10, 64)
		if err != nil || ns <= 0 {
			break
		}
		return time.Duration(ns), nil
	}
	return 0, fmt.Errorf("crypto sub-mode printed no result: %q", strings.TrimSpace(s))
}

// coldTarget is issue 14's cold target: whole-process CPU per cold Check ≤
// the floor's CPU per Check + 1.3 × the cryptography alone.
const coldTarget = 1.3

// coldVerdict formats the cold target line for one run.
// coldMedian is the verdict over several rounds: the median of their ratios
// (the cryptography beyond the floor) against issue 14's 1.3.
func coldMedian(ratios []float64) string {
	s := slices.Clone(ratios)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	met := "met"
	if m > coldTarget {
		met = "not met"
	}
	parts := make([]string, len(ratios))
	for i, r := range ratios {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return fmt.Sprintf("median of %d rounds (%s): %.2f × crypto beyond the floor, target ≤ %.1f: %s",
		len(ratios), strings.Join(parts, ", "), m, coldTarget, met)
}

func coldVerdict(check, floor, crypto time.Duration) string {
	limit := floor + time.Duration(coldTarget*float64(crypto))
	met := "met"
	if check > limit {
		met = "not met"
	}
	return fmt.Sprintf("cold CPU/Check %s vs floor %s + %.1f × crypto %s = %s: %s (%.2f × crypto beyond the floor)",
		fmtDur(check), fmtDur(floor), coldTarget, fmtDur(crypto), fmtDur(limit), met, float64(check-floor)/float64(crypto))
}
