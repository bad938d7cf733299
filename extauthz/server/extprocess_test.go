package server

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The helpers in this file run the authorization servers nobody on this
// project wrote (Hydra, zitadel's example OP): find the binary .ci built,
// start it with a clean environment, wait until it answers, stop it.

// externalServer names one such server's binary and the .ci script that
// builds it.
type externalServer struct {
	name   string // as the skip and failure messages say it
	env    string // TOKENTAILOR_<env>_BIN / _DIR
	dir    string // the cache dir under ~/.cache/tokentailor
	file   string // the binary's file name in it
	script string // the .ci script that builds it
}

// binary finds the server's binary: $TOKENTAILOR_<env>_BIN, else the cache
// dir its .ci script writes to; it skips the test when there is none.
func (x externalServer) binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TOKENTAILOR_" + x.env + "_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("TOKENTAILOR_%s_BIN=%s: %v", x.env, p, err)
		}
		return p
	}
	dir := os.Getenv("TOKENTAILOR_" + x.env + "_DIR")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skipf("%s not built: run %s (no home directory to look in)", x.name, x.script)
		}
		dir = filepath.Join(home, ".cache", "tokentailor", x.dir)
	}
	p := filepath.Join(dir, x.file)
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Skipf("%s not built: run %s", x.name, x.script)
	}
	return p
}

// startRetrying calls try up to three times: the free ports it picks may be
// taken by another process before the server binds them.
func startRetrying[T any](t *testing.T, name string, try func() (T, error)) T {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		v, err := try()
		if err == nil {
			return v
		}
		lastErr = err
		t.Logf("%s start attempt %d: %v", name, attempt+1, err)
	}
	t.Fatalf("%s did not start: %v", name, lastErr)
	var zero T
	return zero
}

// cleanCommand is bin with args in dir, with a clean environment (PATH,
// HOME and TMPDIR in dir, then extra): these servers read settings from the
// environment too, and none of the caller's may leak in.
func cleanCommand(bin, dir string, extra []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "TMPDIR=" + dir}, extra...)
	cmd.Dir = dir
	return cmd
}

// process is one run of an external server.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan error // holds Wait's result once the process exited
}

// startProcess starts cmd with its output captured, then polls ready every
// 50 ms until it reports true; it fails (the process stopped) when the
// process exits first or timeout passes.
func startProcess(name string, cmd *exec.Cmd, timeout time.Duration, ready func() bool) (*process, error) {
	p := &process{name: name, cmd: cmd, out: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() { p.exited <- cmd.Wait() }()
	deadline := time.Now().Add(timeout)
	for !ready() {
		select {
		case err := <-p.exited:
			p.exited <- err // for stop
			return nil, fmt.Errorf("%s exited (%v):\n%s", name, err, tail(p.out.String(), 4000))
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready after %s:\n%s", name, timeout, tail(p.out.String(), 4000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p, nil
}

// stop ends the process (SIGTERM, then SIGKILL after 10s) and waits until it
// has exited, so its ports are free. It may be called again.
func (p *process) stop() {
	select {
	case err := <-p.exited:
		p.exited <- err
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		p.exited <- <-p.exited
	}
}

// kill ends the process at once (SIGKILL), as a crash does, and waits until
// it has exited.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	err := <-p.exited
	p.exited <- err
}

// tail is the last n bytes of s, marked as cut when they are not all.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
