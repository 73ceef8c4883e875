package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestFallbackFS(t *testing.T) {
	if err := fstest.TestFS(fallbackFS{}, "index.html"); err != nil {
		t.Fatal(err)
	}
	b, err := fs.ReadFile(fallbackFS{}, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "make build") {
		t.Errorf("fallback page does not say how to build the dashboard: %q", b)
	}
}

func TestBuilt(t *testing.T) {
	tests := []struct {
		name string
		fsys fs.FS
		want bool
	}{
		{"empty dist with placeholder", fstest.MapFS{".keep": {}}, false},
		{"built bundle", fstest.MapFS{"index.html": {Data: []byte("<!doctype html>")}, "assets/index.js": {}}, true},
		{"index.html is a directory", fstest.MapFS{"index.html/x": {}}, false},
		{"fallback", fallbackFS{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Built(tt.fsys); got != tt.want {
				t.Errorf("Built() = %v, want %v", got, tt.want)
			}
		})
	}
}

// FS must serve a page at "/" whether or not the bundle was built, and the
// built page must reference only local assets (no CDN at run time).
func TestFSServesIndex(t *testing.T) {
	srv := httptest.NewServer(http.FileServerFS(FS()))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", res.StatusCode)
	}
	sub, _ := fs.Sub(dist, "dist")
	if !Built(sub) {
		t.Log("dashboard not built: checked the fallback page only")
		return
	}
	b, err := fs.ReadFile(FS(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"http://", "https://", "//cdn"} {
		if strings.Contains(strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", ""), bad) {
			t.Errorf("index.html references a remote resource (%q)", bad)
		}
	}
	if err := fstest.TestFS(FS(), "index.html"); err != nil {
		t.Error(err)
	}
}
