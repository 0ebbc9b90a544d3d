// Package ui serves the node's fleet page at /ui: one HTML file with its
// script and styles inline (no build step, no external assets), which
// draws GET /v1/fleet as a picture (the core, each farm, this node's links
// coloured by lag) and a table, refreshed every two seconds.
package ui

import (
	_ "embed"
	"net/http"
)

//go:embed fleet.html
var page []byte

// Handler serves the fleet page.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		// Everything is inline; the page talks only to this node.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(page)
	})
}
