package ui

import (
	"bytes"
	"io"
	"io/fs"
	"time"
)

// fallbackFS is a read-only file system with a single index.html.
type fallbackFS struct{}

func (fallbackFS) Open(name string) (fs.File, error) {
	switch name {
	case ".":
		return &fallbackDir{}, nil
	case "index.html":
		return &fallbackFile{Reader: bytes.NewReader(fallback)}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

type fallbackFile struct{ *bytes.Reader }

func (f *fallbackFile) Stat() (fs.FileInfo, error) {
	return fileInfo{name: "index.html", size: int64(len(fallback))}, nil
}
func (f *fallbackFile) Close() error { return nil }

type fallbackDir struct{ done bool }

func (d *fallbackDir) Stat() (fs.FileInfo, error) { return fileInfo{name: ".", dir: true}, nil }
func (d *fallbackDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: ".", Err: fs.ErrInvalid}
}
func (d *fallbackDir) Close() error { return nil }
func (d *fallbackDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.done {
		if n > 0 {
			return nil, io.EOF
		}
		return nil, nil
	}
	d.done = true
	return []fs.DirEntry{fs.FileInfoToDirEntry(fileInfo{name: "index.html", size: int64(len(fallback))})}, nil
}

type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (i fileInfo) Name() string { return i.name }
func (i fileInfo) Size() int64  { return i.size }
func (i fileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return i.dir }
func (i fileInfo) Sys() any           { return nil }
