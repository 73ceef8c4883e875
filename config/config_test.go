package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefaultsAreValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := Load(filepath.Join("..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("config.yaml invalid: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		file     string
		loadErr  []string // substrings of the Load error
		problems []string // substrings, one per Validate line
	}{
		{file: "bad-unknown-key.yaml", loadErr: []string{`unknown key "adress"`, "line 3"}},
		{file: "bad-values.yaml", problems: []string{
			`http.addr: "8080" is not host:port`,
			"dataDir: must not be empty",
			"graph.resolution: must be > 0",
			`log.level: "loud" is not one of`,
			`log.format: "xml" is not one of`,
			"detect.",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			c, err := Load(filepath.Join("testdata", tc.file))
			if len(tc.loadErr) > 0 {
				if err == nil {
					t.Fatal("Load accepted the file")
				}
				for _, want := range tc.loadErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			verr := c.Validate()
			var ve *ValidationError
			if !errors.As(verr, &ve) {
				t.Fatalf("Validate() = %v, want a ValidationError", verr)
			}
			if len(ve.Problems) < len(tc.problems) {
				t.Errorf("got %d problems, want at least %d: %v", len(ve.Problems), len(tc.problems), ve.Problems)
			}
			for _, want := range tc.problems {
				found := false
				for _, p := range ve.Problems {
					found = found || strings.Contains(p, want)
				}
				if !found {
					t.Errorf("no problem mentions %q in:\n%s", want, verr)
				}
			}
		})
	}
}

func TestEmptyFileKeepsDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Graph.Resolution.D() != 10*time.Second || c.HTTP.Addr != "127.0.0.1:8080" {
		t.Errorf("defaults lost: %+v", c)
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	env := map[string]string{"MESHLENS_HTTP_ADDR": "127.0.0.1:9999", "MESHLENS_DATA_DIR": "/tmp/x"}
	ApplyEnv(&c, func(k string) string { return env[k] })
	if c.HTTP.Addr != "127.0.0.1:9999" || c.DataDir != "/tmp/x" {
		t.Errorf("env not applied: %+v", c)
	}
}

// config.yaml is the documented example: it must name every key there is.
func TestExampleConfigNamesEveryKey(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	var def map[string]any
	if err := yaml.Unmarshal(b, &def); err != nil {
		t.Fatal(err)
	}
	var missing []string
	var walk func(prefix string, want, have map[string]any)
	walk = func(prefix string, want, have map[string]any) {
		for k, v := range want {
			hv, ok := have[k]
			if !ok {
				missing = append(missing, prefix+k)
				continue
			}
			if wm, ok := v.(map[string]any); ok {
				hm, _ := hv.(map[string]any)
				walk(prefix+k+".", wm, hm)
			}
		}
	}
	walk("", def, doc)
	if len(missing) > 0 {
		t.Errorf("config.yaml does not document: %v", missing)
	}
}
