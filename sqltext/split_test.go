package sqltext

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const triggerSQL = `CREATE TRIGGER trg AFTER INSERT ON t
WHEN CASE WHEN new.a > 0 THEN 1 ELSE 0 END
BEGIN
  UPDATE t SET end = CASE WHEN new.a = 1 THEN 'x;' ELSE CASE new.b WHEN 2 THEN 'y' END END WHERE id = new.id;
  INSERT INTO log(msg) VALUES ('end; begin;'); -- ; END ;
  DELETE FROM q WHERE x = (SELECT CASE WHEN 1 THEN 2 END);
END`

func TestSplit(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want []string
	}{
		{"empty", "", nil},
		{"whitespace", " \n\t ", nil},
		{"only semicolons", ";;", nil},
		{"only comments and semicolons", "-- a\n; /* b */ ;", nil},
		{"one", "SELECT 1", []string{"SELECT 1"}},
		{"one with terminator", "  SELECT 1;  ", []string{"SELECT 1"}},
		{"trailing comment", "SELECT 1;  -- c", []string{"SELECT 1"}},
		{"trailing comment no semicolon", "SELECT 1 -- c", []string{"SELECT 1"}},
		{"leading comment", "/* hi */ SELECT 1", []string{"SELECT 1"}},
		{"inner comment kept", "SELECT /* ; */ 1", []string{"SELECT /* ; */ 1"}},
		{"two", "SELECT 1; SELECT 2", []string{"SELECT 1", "SELECT 2"}},
		{"two without space", "SELECT 1;SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"empty statements dropped", ";;SELECT 1;;;SELECT 2;;", []string{"SELECT 1", "SELECT 2"}},
		{"semicolon in string", "SELECT 'a;b'; SELECT 2", []string{"SELECT 'a;b'", "SELECT 2"}},
		{"semicolon after doubled quote", "SELECT 'it''s;'", []string{"SELECT 'it''s;'"}},
		{"semicolon in double quotes", `SELECT "a;b" FROM t`, []string{`SELECT "a;b" FROM t`}},
		{"semicolon in backquotes", "SELECT `a;b`", []string{"SELECT `a;b`"}},
		{"semicolon in brackets", "SELECT [a;b]", []string{"SELECT [a;b]"}},
		{"semicolon in line comment", "SELECT 1 -- ; DROP TABLE t\n, 2", []string{"SELECT 1 -- ; DROP TABLE t\n, 2"}},
		{"semicolon in block comment", "SELECT 1 /* ; DROP TABLE t; */", []string{"SELECT 1"}},
		{"blob", "SELECT x'';SELECT X'00'", []string{"SELECT x''", "SELECT X'00'"}},
		{"transaction is not a trigger", "BEGIN; INSERT INTO t VALUES (1); END;", []string{"BEGIN", "INSERT INTO t VALUES (1)", "END"}},
		{"trigger", "CREATE TABLE t(a);\n" + triggerSQL + ";\nSELECT 1;", []string{"CREATE TABLE t(a)", triggerSQL, "SELECT 1"}},
		{"temp trigger lower case", "create temp trigger x before delete on t begin select 1; select 2; end; select 3",
			[]string{"create temp trigger x before delete on t begin select 1; select 2; end", "select 3"}},
		{"temporary trigger if not exists", "CREATE TEMPORARY TRIGGER IF NOT EXISTS x AFTER UPDATE ON t BEGIN SELECT 1; END",
			[]string{"CREATE TEMPORARY TRIGGER IF NOT EXISTS x AFTER UPDATE ON t BEGIN SELECT 1; END"}},
		{"trigger end with comments", "CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; /* c */ END -- c\n;SELECT 2",
			[]string{"CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; /* c */ END", "SELECT 2"}},
		{"explain create trigger", "EXPLAIN CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; END; SELECT 2",
			[]string{"EXPLAIN CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; END", "SELECT 2"}},
		{"quoted END does not close", `CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; "END"; END; SELECT 2`,
			[]string{`CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; "END"; END`, "SELECT 2"}},
		{"trigger as a name", "CREATE TABLE trigger(end); SELECT end FROM trigger", []string{"CREATE TABLE trigger(end)", "SELECT end FROM trigger"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Split(tt.sql)
			if err != nil {
				t.Fatalf("Split(%q): %v", tt.sql, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Split(%q) =\n %q\nwant\n %q", tt.sql, got, tt.want)
			}
		})
	}
}

func TestSplitErrors(t *testing.T) {
	tests := []struct {
		sql string
		err error
	}{
		{"SELECT 1; SELECT 'a", ErrUnterminated},
		{"SELECT 1; /* x", ErrUnterminated},
		{`SELECT "a; b`, ErrUnterminated},
		{"SELECT 1; SELECT [a", ErrUnterminated},
		{"CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1;", ErrUnterminated},
		{"CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; END SELECT 2;", ErrUnterminated},
		{"CREATE TRIGGER x; DROP TABLE t;", ErrUnterminated},
		{"SELECT 1; SELECT 2 ^ 3", ErrIllegal},
	}
	for _, tt := range tests {
		got, err := Split(tt.sql)
		if !errors.Is(err, tt.err) {
			t.Errorf("Split(%q) = %q, %v; want error %v", tt.sql, got, err, tt.err)
		}
	}
}

func TestSingle(t *testing.T) {
	tests := []struct {
		sql  string
		want string
		err  error
	}{
		{"SELECT 1", "SELECT 1", nil},
		{"SELECT 1;", "SELECT 1", nil},
		{"SELECT 1;  -- c", "SELECT 1", nil},
		{"SELECT 1; /* c */ ;\n", "SELECT 1", nil},
		{"SELECT ';' || \";\"", "SELECT ';' || \";\"", nil},
		{"INSERT INTO t VALUES ('a;b') RETURNING id;", "INSERT INTO t VALUES ('a;b') RETURNING id", nil},
		{triggerSQL + ";", triggerSQL, nil},
		{"", "", ErrEmpty},
		{";;", "", ErrEmpty},
		{" -- only a comment", "", ErrEmpty},
		{"SELECT 1; SELECT 2", "", ErrMultipleStatements},
		{"SELECT 1;SELECT 2;", "", ErrMultipleStatements},
		{"SELECT 1 -- c\n; DELETE FROM t", "", ErrMultipleStatements},
		{"SELECT '1'';'; DELETE FROM t", "", ErrMultipleStatements},
		{triggerSQL + "; DELETE FROM t", "", ErrMultipleStatements},
		{"SELECT 'x", "", ErrUnterminated},
		{"SELECT 1 /* ; DELETE FROM t", "", ErrUnterminated},
		{"SELECT 1\x00; DELETE FROM t", "", ErrIllegal},
		{"SELECT $a(');DELETE FROM t;--')", "", ErrIllegal},
	}
	for _, tt := range tests {
		got, err := Single(tt.sql)
		if !errors.Is(err, tt.err) || got != tt.want {
			t.Errorf("Single(%q) = %q, %v; want %q, %v", tt.sql, got, err, tt.want, tt.err)
		}
	}
	_, err := Single("SELECT 1;  SELECT 2")
	var pe *PosError
	if !errors.As(err, &pe) || pe.Pos != 11 {
		t.Errorf("Single error %v: want *PosError at offset 11", err)
	}
}

func FuzzSplit(f *testing.F) {
	seeds := []string{
		"", ";", ";;", "SELECT 1", "SELECT 1; SELECT 2", "SELECT 1;  -- c",
		"SELECT 'a;''b'; SELECT \"c;\"\"d\"", "SELECT [x;y] FROM `a;b`", "SELECT x'00'; SELECT X''",
		"SELECT 1 /* ; */; -- ;\nSELECT 2", "SELECT ?1, :a, @b, $c, #d, $e::f",
		"CREATE TABLE t(a); " + triggerSQL + "; SELECT 1",
		"create temp trigger x after delete on t begin select 1; end; end; select 2",
		"EXPLAIN QUERY PLAN CREATE TRIGGER x AFTER DELETE ON t BEGIN SELECT 1; END",
		"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x RETURNING *",
		"SELECT 1.5e-3, .5, 0x1F, 1_000 -> ->> || <> != == <= >= << >>",
		"SELECT 'x", "SELECT 1 /*", "SELECT $a(;)",
		"\u00a0", // a word to SQLite (bytes >= 0x80 are letters), not whitespace
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmts, err := Split(sql)
		single, serr := Single(sql)
		_, terr := Tokens(sql)
		if (err == nil) != (terr == nil) && !errors.Is(err, ErrUnterminated) {
			t.Fatalf("Split error %v but Tokens error %v", err, terr)
		}
		if err != nil {
			if serr == nil {
				t.Fatalf("Split failed (%v) but Single succeeded", err)
			}
			return
		}
		switch {
		case len(stmts) == 0 && !errors.Is(serr, ErrEmpty),
			len(stmts) == 1 && (serr != nil || single != stmts[0]),
			len(stmts) > 1 && !errors.Is(serr, ErrMultipleStatements):
			t.Fatalf("Single = %q, %v inconsistent with Split = %q", single, serr, stmts)
		}
		for _, s := range stmts {
			if s == "" || s != strings.Trim(s, " \t\n\v\f\r") {
				t.Fatalf("statement %q is empty or not trimmed", s)
			}
			if !strings.Contains(sql, s) {
				t.Fatalf("statement %q is not a substring of the input", s)
			}
			if again, err := Single(s); err != nil || again != s {
				t.Fatalf("Single(%q) = %q, %v", s, again, err)
			}
		}
		joined := strings.Join(stmts, ";")
		again, err := Split(joined)
		if err != nil {
			t.Fatalf("re-Split(%q): %v", joined, err)
		}
		if !reflect.DeepEqual(again, stmts) {
			t.Fatalf("re-Split(%q) =\n %q\nwant\n %q", joined, again, stmts)
		}
	})
}
