package search_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost/search"
)

func TestDirectives(t *testing.T) {
	src := `CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT, body TEXT); -- outpost: search pages_fts on pages (title, body)
-- a comment
  --Outpost:SEARCH "my index" ON [Pages] ("title" , ` + "`body`" + `) TOKENIZE 'unicode61 tokenchars ''-_'''
-- outpost: table pages writable by master
/* -- outpost: search hidden on pages (title) */
SELECT '-- outpost: search instring on pages (title)';
`
	got, problems := search.Directives(src)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	want := []search.Index{
		{Name: "pages_fts", Table: "pages", Columns: []string{"title", "body"}, Line: 1},
		{Name: "my index", Table: "Pages", Columns: []string{"title", "body"}, Tokenize: "unicode61 tokenchars '-_'", Line: 3},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestDirectives_Malformed(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{"-- outpost: search", "missing the index name"},
		{"-- outpost: search f", `missing "on"`},
		{"-- outpost: search f on", "missing the table name"},
		{"-- outpost: search f on t", `missing "("`},
		{"-- outpost: search f on t title", `found "title" where "(" belongs`},
		{"-- outpost: search f on t (", "missing a column name"},
		{"-- outpost: search f on t (a", `missing ")"`},
		{"-- outpost: search f on t (a b)", `found "b" where "," or ")" belongs`},
		{"-- outpost: search f on t (a, a)", "listed twice"},
		{"-- outpost: search f on t (a) tokenize", "tokenize takes a string"},
		{"-- outpost: search f on t (a) tokenize porter", "tokenize takes a string"},
		{"-- outpost: search f on t (a) tokenize ''", "empty tokenizer"},
		{"-- outpost: search f on t (a) tokenize 'x' extra", `unexpected "extra"`},
		{"-- outpost: search 'f' on t (a)", "is not a name"},
	} {
		_, problems := search.Directives("\n" + tt.text)
		if len(problems) != 1 || !strings.Contains(problems[0], tt.want) || !strings.Contains(problems[0], "line 2") || !strings.Contains(problems[0], "want \"-- outpost: search") {
			t.Errorf("%s: got %q, want one problem on line 2 mentioning %q and the form", tt.text, problems, tt.want)
		}
	}
}

func TestIndex_DDL(t *testing.T) {
	ix := search.Index{Name: "pages_fts", Table: "pages", Columns: []string{"title", "body"}, Keys: []string{"id"}}
	if got, want := ix.Create(), `CREATE VIRTUAL TABLE "pages_fts" USING fts5("title", "body", "id" UNINDEXED, content='pages', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')`; got != want {
		t.Fatalf("Create:\n got %s\nwant %s", got, want)
	}
	ix.Columns = []string{"id", "title"} // a key that is indexed is not added again
	if got := ix.Create(); strings.Count(got, `"id"`) != 1 || strings.Contains(got, "UNINDEXED") {
		t.Fatalf("Create with the key indexed: %s", got)
	}
	for _, name := range []string{"pages_fts", "PAGES_FTS_data", "pages_fts_idx", "pages_fts_docsize", "pages_fts_config"} {
		if !ix.Owns(name) {
			t.Errorf("Owns(%q) = false", name)
		}
	}
	for _, name := range []string{"pages", "pages_fts_other", "outpost_search_stash__pages_fts"} {
		if ix.Owns(name) {
			t.Errorf("Owns(%q) = true", name)
		}
	}
}
