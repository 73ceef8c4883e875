package config

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode: no YAML may panic the strict decoder or Validate.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{filepath.Join("..", "config.yaml"), "testdata/bad-values.yaml", "testdata/bad-unknown-key.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Default()
		if err := Decode(bytes.NewReader(b), &c); err != nil {
			return
		}
		_ = c.Validate()
	})
}
