package config

import (
	"fmt"
	"os"
	"strings"
)

// ReadSecret returns the secret s names: the content of its file with
// trailing line endings ("\n", "\r\n") removed, or its environment variable
// as is. It is tokentailor's one secret reader (HMAC secrets, client
// secrets); errors never hold the secret.
func (c *Config) ReadSecret(s *Secret) ([]byte, error) {
	if s == nil {
		return nil, nil
	}
	if s.Env != "" {
		v, ok := os.LookupEnv(s.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("secret: environment variable %s is not set", s.Env)
		}
		return []byte(v), nil
	}
	b, err := os.ReadFile(c.Path(s.File))
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("secret: %s is empty", s.File)
	}
	return b, nil
}

// Warnings lists what is allowed but unwise in the loaded config, such as
// a private key or secret file that other users may read. The caller logs
// them; they never stop a start or a reload.
func (c *Config) Warnings() []string { return c.warnings }

// permissionWarnings names each key or secret file that group or others
// may read or write. Missing files are not reported here: loading them
// fails with its own error.
func (c *Config) permissionWarnings() []string {
	var out []string
	check := func(field, p string) {
		if p == "" {
			return
		}
		fi, err := os.Stat(c.Path(p))
		if err != nil || !fi.Mode().IsRegular() {
			return
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			out = append(out, fmt.Sprintf("%s: %s is accessible to other users (mode %04o); restrict it with chmod 600", field, p, perm))
		}
	}
	for i, k := range c.Mint.Keys {
		check(fmt.Sprintf("mint.keys[%d].file", i), k.File)
	}
	for i, is := range c.Issuers {
		f := fmt.Sprintf("issuers[%d]", i)
		if is.HMACSecret != nil {
			check(f+".hmac_secret.file", is.HMACSecret.File)
		}
		if cl := is.Client; cl != nil {
			if cl.Secret != nil {
				check(f+".client.secret.file", cl.Secret.File)
			}
			check(f+".client.private_key_file", cl.PrivateKeyFile)
		}
	}
	return out
}
