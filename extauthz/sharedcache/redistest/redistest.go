// Package redistest starts real redis-server processes on 127.0.0.1 for tests
// of the packages that use extauthz/sharedcache: a standalone server (plain,
// TLS, with ACL lines, killed, frozen, restarted), a Sentinel set (master,
// replica, Sentinel) and a Cluster (masters, a replica each if asked),
// each with a failover helper. Tests skip, with a message
// saying how to install it, when no redis-server binary is found; .ci/run
// installs one and fails when a test skips there.
package redistest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options configures a server started by StartWith.
type Options struct {
	// Config holds extra redis.conf lines (ACL users, replicaof, cluster
	// settings), each ending in a newline.
	Config string
	// TLS, when set, makes the port a TLS-only port serving these files.
	// A redis-server built without TLS makes the test skip.
	TLS *TLSFiles
	// Ready is the log line that says the server is up; empty means
	// "Ready to accept connections".
	Ready string
	// Args are extra command-line arguments after the config file
	// ("--sentinel").
	Args []string
}

// Server is a redis-server started by a test in its own temporary
// directory, persistence off, listening on a random 127.0.0.1 port.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	opts Options
	cmd  *exec.Cmd
	out  *syncBuffer
}

// Binary returns the redis-server path (TOKENTAILOR_REDIS_SERVER, else the
// PATH) or skips the test.
func Binary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("TOKENTAILOR_REDIS_SERVER"); bin != "" {
		return bin
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not found: apt-get install redis-server, or set TOKENTAILOR_REDIS_SERVER (.ci/run installs it)")
	}
	return bin
}

// Start starts a plain server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith starts a server configured by o and stops it when the test ends.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), port: FreePort(t), opts: o}
	if err := s.start(); err != nil {
		if o.TLS != nil && strings.Contains(strings.ToLower(err.Error()), "tls") {
			t.Skipf("this redis-server is built without TLS: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// FreePort returns a 127.0.0.1 port free right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Log returns what the server printed so far.
func (s *Server) Log() string { return s.out.String() }

func (s *Server) start() error {
	portLine := fmt.Sprintf("port %d\n", s.port)
	if f := s.opts.TLS; f != nil {
		portLine = fmt.Sprintf("port 0\ntls-port %d\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\n",
			s.port, f.Cert, f.Key, f.CA)
	}
	conf := "bind 127.0.0.1\nprotected-mode no\nsave \"\"\nappendonly no\ndir " + s.dir + "\n" + portLine + s.opts.Config
	path := filepath.Join(s.dir, "redis.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	ready := s.opts.Ready
	if ready == "" {
		ready = "Ready to accept connections"
	}
	s.out = &syncBuffer{}
	s.cmd = exec.Command(s.bin, append([]string{path}, s.opts.Args...)...)
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
		if strings.Contains(s.out.String(), ready) {
			go func() { <-exited }()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server did not log %q in 10s: %s", ready, s.out.String())
}

// Stop kills the server at once (SIGKILL: no goodbye to clients) and waits
// until its port is free.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a frozen server dies too
	_ = s.cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Addr(), 50*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd = nil
}

// Restart starts a stopped server again on the same port, with the same
// options and an empty data set.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatal(err)
	}
}

// Freeze stops the process (SIGSTOP): connections stay open and nothing
// answers, as with a Redis stuck or a network black hole.
func (s *Server) Freeze() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Do sends one command over plain TCP and returns its reply flattened:
// simple strings, errors and integers as their raw line ("+OK", ":3"),
// bulk strings as their content, arrays as their elements in order, nil as
// nothing. For test set-up and inspection only (not over TLS).
func (s *Server) Do(args ...string) []string {
	s.t.Helper()
	out, err := Do(s.Addr(), args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// Command is Do's first element, "" for a nil reply (e.g. "+OK" for FLUSHALL).
func (s *Server) Command(args ...string) string {
	s.t.Helper()
	if r := s.Do(args...); len(r) > 0 {
		return r[0]
	}
	return ""
}

// Do sends one command to addr over plain TCP and returns its reply
// flattened as Server.Do describes.
func Do(addr string, args ...string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(c))
}

// readReply reads one RESP2 reply, flattening arrays.
func readReply(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, fmt.Errorf("empty reply line")
	}
	switch line[0] {
	case '+', '-', ':':
		return []string{line}, nil
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return []string{string(buf[:n])}, nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, err
		}
		var out []string
		for range max(n, 0) {
			el, err := readReply(r)
			if err != nil {
				return nil, err
			}
			out = append(out, el...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// Info returns the fields of INFO section as a map ("role" → "master").
func (s *Server) Info(section string) map[string]string {
	s.t.Helper()
	return ParseInfo(s.Command("INFO", section))
}

// ParseInfo reads the field:value lines of an INFO reply.
func ParseInfo(info string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m
}

// syncBuffer is a bytes.Buffer the process writes while the test reads.
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
