// Package demosite holds the demo site that `outpost up` serves on every
// node's public listener: routes.yaml and templates/ over the pages table
// of examples/pages.sql (docs/SITE.md).
package demosite

import (
	"embed"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed routes.yaml templates/*.html
var files embed.FS

// Write copies the demo site into dir (created if needed).
func Write(dir string) error {
	return fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, path)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}
