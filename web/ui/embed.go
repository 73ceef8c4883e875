// Package ui holds the dashboard's front end (web/ui), built by Vite into
// dist/ and embedded in the binary, so the dashboard needs no network at run time.
package ui

import (
	"embed"
	"io/fs"
)

// dist holds the built bundle. dist/.keep is committed so that this compiles
// before the first `npm run build`; the Makefile builds dist before `go build`.
//
//go:embed all:dist
var dist embed.FS

//go:embed fallback.html
var fallback []byte

// FS returns the dashboard's files rooted at the site root (index.html,
// assets/...). When the bundle was not built it returns a one-page site that
// says how to build it, so that serving "/" never fails.
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err == nil && Built(sub) {
		return sub
	}
	return fallbackFS{}
}

// Built reports whether fsys holds a built dashboard.
func Built(fsys fs.FS) bool {
	st, err := fs.Stat(fsys, "index.html")
	return err == nil && !st.IsDir()
}
