package sharedcache

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// redisServer is a real redis-server on 127.0.0.1, started by a test in its
// own temporary directory with persistence off.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	conf string // extra config lines
	tls  bool
	cmd  *exec.Cmd
	out  *syncBuffer
}

// redisBinary returns the redis-server path or skips the test.
func redisBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("TOKENTAILOR_REDIS_SERVER")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Skip("redis-server not found: apt-get install redis-server, or set TOKENTAILOR_REDIS_SERVER (.ci/run installs it)")
		}
	}
	return bin
}

// startRedis starts a server with extra config lines; tlsCfg, when set,
// makes the port a TLS port with those certificate files.
func startRedis(t testing.TB, conf string, tlsFiles *tlsFiles) *redisServer {
	t.Helper()
	s := &redisServer{t: t, bin: redisBinary(t), dir: t.TempDir(), port: freePort(t), conf: conf, tls: tlsFiles != nil}
	if tlsFiles != nil {
		s.conf += fmt.Sprintf("tls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\n",
			tlsFiles.cert, tlsFiles.key, tlsFiles.ca)
	}
	if err := s.start(); err != nil {
		if tlsFiles != nil && strings.Contains(strings.ToLower(err.Error()), "tls") {
			t.Skipf("this redis-server is built without TLS: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// start runs the server and waits until it accepts connections.
func (s *redisServer) start() error {
	portLine := fmt.Sprintf("port %d\n", s.port)
	if s.tls {
		portLine = fmt.Sprintf("port 0\ntls-port %d\n", s.port)
	}
	conf := "bind 127.0.0.1\nprotected-mode no\nsave \"\"\nappendonly no\n" +
		"dir " + s.dir + "\n" + portLine + s.conf
	path := filepath.Join(s.dir, "redis.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	s.out = &syncBuffer{}
	s.cmd = exec.Command(s.bin, path)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			s.cmd = nil
			return fmt.Errorf("redis-server exited (%v): %s", err, s.out.String())
		default:
		}
		if strings.Contains(s.out.String(), "Ready to accept connections") {
			go func() { <-exited }()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server did not start in 10s: %s", s.out.String())
}

// stop kills the server at once (SIGKILL: no goodbye to clients).
func (s *redisServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	// Wait for the port to be free, so a restart can bind it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.addr(), 50*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd = nil
}

// restart starts the server again on the same port, empty.
func (s *redisServer) restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// command sends one inline command over plain TCP and returns the first
// reply line; for test set-up and inspection only (not over TLS).
func (s *redisServer) command(args ...string) []string {
	s.t.Helper()
	c, err := net.DialTimeout("tcp", s.addr(), time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(b.String())); err != nil {
		s.t.Fatal(err)
	}
	return readReply(s.t, bufio.NewReader(c))
}

// readReply reads one RESP2 reply, flattening arrays into strings.
func readReply(t testing.TB, r *bufio.Reader) []string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch line[0] {
	case '+', '-', ':':
		return []string{line}
	case '$':
		var n int
		fmt.Sscanf(line[1:], "%d", &n)
		if n < 0 {
			return nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		return []string{string(buf[:n])}
	case '*':
		var n int
		fmt.Sscanf(line[1:], "%d", &n)
		var out []string
		for range max(n, 0) {
			out = append(out, readReply(t, r)...)
		}
		return out
	}
	t.Fatalf("unexpected reply %q", line)
	return nil
}

// syncBuffer is a bytes.Buffer that the process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tlsFiles are PEM files for a TLS-enabled server, and the client config
// that trusts its CA.
type tlsFiles struct {
	ca, cert, key string
	client        *tls.Config
}

func fmtSscan(s string, v *int64) (int, error) {
	return fmt.Sscanf(strings.TrimPrefix(s, ":"), "%d", v)
}

// freeze stops the server process (SIGSTOP): connections stay open and
// nothing answers, as with a Redis stuck or a network black hole.
func (s *redisServer) freeze() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// thaw resumes a frozen server.
func (s *redisServer) thaw() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }
