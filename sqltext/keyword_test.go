package sqltext

import (
	"errors"
	"testing"
)

func TestHasKeyword(t *testing.T) {
	tests := []struct {
		sql, kw string
		want    bool
		err     error
	}{
		{"INSERT INTO t VALUES (1) RETURNING id", "RETURNING", true, nil},
		{"insert into t values (1) returning *", "RETURNING", true, nil},
		{"INSERT INTO t VALUES (1) ReTuRnInG id", "returning", true, nil},
		{"INSERT INTO t VALUES ('RETURNING')", "RETURNING", false, nil},
		{`INSERT INTO "returning" VALUES (1)`, "RETURNING", false, nil},
		{"INSERT INTO [returning] VALUES (1)", "RETURNING", false, nil},
		{"INSERT INTO `returning` VALUES (1)", "RETURNING", false, nil},
		{"INSERT INTO t VALUES (1) -- RETURNING id", "RETURNING", false, nil},
		{"INSERT INTO t VALUES (1) /* RETURNING id */", "RETURNING", false, nil},
		{"INSERT INTO t VALUES (:returning, $returning)", "RETURNING", false, nil},
		{"INSERT INTO t VALUES (1) RETURNINGX", "RETURNING", false, nil},
		{"INSERT INTO t(returning_id) VALUES (1)", "RETURNING", false, nil},
		{"CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT)", "AUTOINCREMENT", true, nil},
		{"CREATE TABLE t(id INTEGER PRIMARY KEY, note TEXT DEFAULT 'autoincrement')", "AUTOINCREMENT", false, nil},
		{"CREATE TABLE t(id INTEGER PRIMARY KEY autoincrement,", "AUTOINCREMENT", true, nil},
		{"", "RETURNING", false, nil},
		{"SELECT 'x RETURNING", "RETURNING", false, ErrUnterminated},
		{"SELECT 1 RETURNING /*", "RETURNING", false, ErrUnterminated},
	}
	for _, tt := range tests {
		got, err := HasKeyword(tt.sql, tt.kw)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("HasKeyword(%q, %q) = %v, %v; want %v, %v", tt.sql, tt.kw, got, err, tt.want, tt.err)
		}
	}
}

func TestFirstKeyword(t *testing.T) {
	tests := []struct{ sql, want string }{
		{"SELECT 1", "SELECT"},
		{"  select 1", "SELECT"},
		{"-- c\n/* d */ insert into t values (1)", "INSERT"},
		{"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "WITH"},
		{"pragma table_info(t)", "PRAGMA"},
		{"explain select 1", "EXPLAIN"},
		{"", ""},
		{";", ""},
		{"(SELECT 1)", ""},
		{`"select"`, ""},
		{"'select'", ""},
		{"SELECT 'unterminated", "SELECT"},
		{"'unterminated", ""},
		{"\x00SELECT", ""},
	}
	for _, tt := range tests {
		if got := FirstKeyword(tt.sql); got != tt.want {
			t.Errorf("FirstKeyword(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
}

func TestVerb(t *testing.T) {
	tests := []struct{ sql, want string }{
		{"SELECT 1", "SELECT"},
		{"delete from t", "DELETE"},
		{"  replace into t values (1)", "REPLACE"},
		{"VALUES (1), (2)", "VALUES"},
		{"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "INSERT"},
		{"with x as (select 1) select * from x", "SELECT"},
		{"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM c WHERE n < 10) SELECT n FROM c", "SELECT"},
		{"WITH a AS MATERIALIZED (SELECT 1), b(x, y) AS NOT MATERIALIZED (SELECT (1), ((2))) UPDATE t SET x = 1", "UPDATE"},
		{`WITH "a;b" AS (SELECT ')'), [c] AS (SELECT 1), 'd' AS (VALUES (1)) DELETE FROM t`, "DELETE"},
		{"WITH x AS (SELECT 1) /* c */ -- d\n values (1)", "VALUES"},
		{"WITH x AS (SELECT 1) REPLACE INTO t SELECT * FROM x", "REPLACE"},
		{"WITH x AS (SELECT 1", ""},
		{"WITH x (SELECT 1) SELECT 1", ""},
		{"WITH x AS NOT (SELECT 1) SELECT 1", ""},
		{"WITH x AS (SELECT 1),", ""},
		{"WITH x AS (SELECT 1)", ""},
		{"WITH x AS (SELECT 1) (SELECT 1)", ""},
		{"WITH", ""},
		{"", ""},
		{"(SELECT 1)", ""},
	}
	for _, tt := range tests {
		if got := Verb(tt.sql); got != tt.want {
			t.Errorf("Verb(%q) = %q, want %q", tt.sql, got, tt.want)
		}
	}
}
