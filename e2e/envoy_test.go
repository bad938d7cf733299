package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tokentailor/tokentailor/envoy"
	"github.com/tokentailor/tokentailor/envoy/validate"
)

// envoyBinary is ENVOY_BIN, else envoy on PATH, else "".
func envoyBinary() string {
	if b := os.Getenv("ENVOY_BIN"); b != "" {
		return b
	}
	if b, err := exec.LookPath("envoy"); err == nil {
		return b
	}
	return ""
}

func socketAddr(host string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}
}

// envoyFront starts a real Envoy with the bootstrap from envoy/, rewritten
// for free loopback ports, tokentailor's temp socket or port, and the apps'
// addresses, and returns the inbound listener's URL.
func envoyFront(bin string) frontFunc {
	return func(t *testing.T, bootstrap []byte, tt *tokentailor, upstreams map[string]string) string {
		t.Helper()
		b, err := validate.Parse(bootstrap)
		if err != nil {
			t.Fatal(err)
		}
		adminPort := freePort(t)
		b.Admin.Address = socketAddr("127.0.0.1", adminPort)
		var inbound int
		for _, l := range b.GetStaticResources().GetListeners() {
			p := freePort(t)
			if l.GetName() == envoy.InboundListener {
				inbound = p
			}
			l.Address = socketAddr("127.0.0.1", p)
		}
		for _, c := range b.GetStaticResources().GetClusters() {
			var addr *corev3.Address
			switch {
			case c.GetName() == envoy.AuthzCluster && tt.socket != "":
				addr = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: tt.socket}}}
			case c.GetName() == envoy.AuthzCluster:
				host, port, _ := net.SplitHostPort(tt.grpc)
				p, _ := strconv.Atoi(port)
				addr = socketAddr(host, p)
			default:
				u, ok := upstreams[c.GetName()]
				if !ok {
					continue
				}
				host, port, err := net.SplitHostPort(u[len("http://"):])
				if err != nil {
					t.Fatal(err)
				}
				p, _ := strconv.Atoi(port)
				addr = socketAddr(host, p)
			}
			for _, le := range c.GetLoadAssignment().GetEndpoints() {
				for _, lb := range le.GetLbEndpoints() {
					lb.GetEndpoint().Address = addr
				}
			}
		}
		js, err := protojson.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "envoy.json")
		writeFile(t, path, js)
		logs := &syncBuffer{}
		cmd := exec.Command(bin, "-c", path, "--base-id", strconv.Itoa(adminPort), "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("envoy output:\n%s", logs.String())
			}
		})
		waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/ready", adminPort), done, logs)
		return fmt.Sprintf("http://127.0.0.1:%d", inbound)
	}
}
