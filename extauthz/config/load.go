package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// MaxFileBytes bounds the size of a config file.
const MaxFileBytes = 1 << 20

// FieldError is one problem in the configuration, named by its field path.
type FieldError struct {
	// Field is the path, e.g. "routes[2].upstream.ttl".
	Field string
	// Problem says what is wrong, and where it can, how to fix it.
	Problem string
	// Line is the line of the file where the field is; 0 when unknown.
	Line int
}

func (e FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Problem)
	}
	return e.Field + ": " + e.Problem
}

// Load reads, parses, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, MaxFileBytes)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, filepath.Dir(abs))
}

// Parse parses YAML config data strictly; dir resolves relative paths.
// Errors name the field's path and line and, where they can, the fix:
//
//	line 7: issuers[0]: unknown field "audience" (did you mean "audiences"?)
func Parse(data []byte, dir string) (*Config, error) {
	lines, shapeErrs := checkShape(data)
	if len(shapeErrs) > 0 {
		return nil, joinFieldErrors(shapeErrs)
	}
	var c Config
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("config: %s", cleanYAMLError(err))
	}
	c.dir = dir
	c.applyDefaults()
	if probs := c.problems(); len(probs) > 0 {
		for i := range probs {
			probs[i].Line = lines.of(probs[i].Field)
		}
		return nil, joinFieldErrors(probs)
	}
	c.warnings = c.permissionWarnings()
	return &c, nil
}

func joinFieldErrors(fe []FieldError) error {
	errs := make([]error, len(fe))
	for i, e := range fe {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// cleanYAMLError strips the wrapping that sigs.k8s.io/yaml adds so the field
// name stays readable.
func cleanYAMLError(err error) string {
	s := err.Error()
	for _, p := range []string{"error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

// Path resolves p against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// Files lists every file the config reads (keys, secrets), resolved, so a
// watcher can reload when one changes.
func (c *Config) Files() []string {
	var out []string
	add := func(p string) {
		if p != "" {
			out = append(out, c.Path(p))
		}
	}
	for _, k := range c.Mint.Keys {
		add(k.File)
	}
	if s := c.DPoP.NonceSecret; s != nil {
		add(s.File)
	}
	for _, is := range c.Issuers {
		if is.HMACSecret != nil {
			add(is.HMACSecret.File)
		}
		if is.Client != nil {
			if is.Client.Secret != nil {
				add(is.Client.Secret.File)
			}
			add(is.Client.PrivateKeyFile)
		}
	}
	if c.SharedCache != nil {
		for _, f := range c.SharedCache.files() {
			add(f)
		}
	}
	return out
}

// Auto memory limit: room to work plus what a full cache entry holds.
const (
	autoMemoryBase = 32 << 20
	// autoBytesPerEntry is a validation and a minted-token cache entry of
	// typical tokens. A returning token's principal also keeps its minted
	// token, answer and encoding: weighed at ≈ 4.6 KB per token
	// (docs/performance.md). Left lower on purpose: the limit is soft, a
	// cache full of returning tokens makes the collector run more often.
	autoBytesPerEntry = 2560
	noMemoryLimit     = math.MaxInt64
)

// Limit returns the soft memory limit in bytes that MemoryLimit asks for with
// caches of maxEntries entries: math.MaxInt64 for "off" (Go's own default).
func (r Runtime) Limit(maxEntries int) (int64, error) {
	switch strings.ToLower(strings.TrimSpace(r.MemoryLimit)) {
	case "", "auto":
		return autoMemoryBase + autoBytesPerEntry*int64(max(maxEntries, 0)), nil
	case "off":
		return noMemoryLimit, nil
	}
	q, err := resource.ParseQuantity(r.MemoryLimit)
	if err != nil {
		return 0, fmt.Errorf("%q is not auto, off or a size such as 96Mi", r.MemoryLimit)
	}
	n, ok := q.AsInt64()
	if !ok || n < 16<<20 {
		return 0, fmt.Errorf("%q: a limit under 16Mi would keep the collector running without pause", r.MemoryLimit)
	}
	return n, nil
}
