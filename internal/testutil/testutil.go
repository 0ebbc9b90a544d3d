// Package testutil holds helpers shared by tests: identities, schemas and
// stores opened in temporary directories.
package testutil

import (
	"context"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/store"
)

// PagesSchema is the demo schema used across tests.
const PagesSchema = `
CREATE TABLE pages (
	id    TEXT PRIMARY KEY NOT NULL,
	slug  TEXT NOT NULL DEFAULT '',
	title TEXT NOT NULL DEFAULT '',
	body  TEXT,
	views INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX pages_slug ON pages (slug);
CREATE TABLE kv (
	k TEXT NOT NULL,
	n INTEGER NOT NULL,
	v,
	PRIMARY KEY (k, n)
) WITHOUT ROWID;
`

// Identity returns a valid identity for a test node.
func Identity(name, code string) outpost.Identity {
	return outpost.Identity{Name: name, Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: code}
}

// OpenStore opens a store in dir (a new temp dir when empty) and closes it
// when the test ends.
func OpenStore(tb testing.TB, dir string, opts store.Options) *store.Store {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	opts.Dir = dir
	if opts.Identity == (outpost.Identity{}) {
		opts.Identity = Identity("EDGE01", "43ax")
	}
	if opts.Schema == "" {
		opts.Schema = PagesSchema
	}
	s, err := store.Open(context.Background(), opts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}
