package sqltext

import (
	"errors"
	"reflect"
	"testing"
)

func TestTokens(t *testing.T) {
	type tk struct {
		k    Kind
		text string
	}
	tests := []struct {
		name string
		sql  string
		want []tk
	}{
		{"empty", "", nil},
		{"only comments", " -- a\n/* b */\t", nil},
		{"simple", "SELECT a,b FROM t;", []tk{
			{Word, "SELECT"}, {Word, "a"}, {Operator, ","}, {Word, "b"}, {Word, "FROM"}, {Word, "t"}, {Semicolon, ";"},
		}},
		{"string with semicolon and doubled quote", "'a;''b'", []tk{{String, "'a;''b'"}}},
		{"empty string", "''''", []tk{{String, "''''"}}},
		{"double-quoted ident", `"x;""y"`, []tk{{QuotedIdent, `"x;""y"`}}},
		{"backquoted ident", "`a;``b`", []tk{{QuotedIdent, "`a;``b`"}}},
		{"bracket ident has no escape", "[a;'b[]", []tk{{QuotedIdent, "[a;'b[]"}}},
		{"blobs", "x'' X'0aFF'", []tk{{Blob, "x''"}, {Blob, "X'0aFF'"}}},
		{"x word then string", "xx'a'", []tk{{Word, "xx"}, {String, "'a'"}}},
		{"dollar in word", "a$b _c é", []tk{{Word, "a$b"}, {Word, "_c"}, {Word, "é"}}},
		{"numbers", "1 1.5 .5 1. 1e5 1E+5 2e-3 0x1F 1_000", []tk{
			{Number, "1"}, {Number, "1.5"}, {Number, ".5"}, {Number, "1."}, {Number, "1e5"},
			{Number, "1E+5"}, {Number, "2e-3"}, {Number, "0x1F"}, {Number, "1_000"},
		}},
		{"dot operator", "t.c", []tk{{Word, "t"}, {Operator, "."}, {Word, "c"}}},
		{"params", "? ?12 :a @b $c #d $a::b", []tk{
			{Param, "?"}, {Param, "?12"}, {Param, ":a"}, {Param, "@b"}, {Param, "$c"}, {Param, "#d"}, {Param, "$a::b"},
		}},
		{"param then word", "?x", []tk{{Param, "?"}, {Word, "x"}}},
		{"operators", "== = <> != <= >= << >> || | -> ->> - / * % & ~ + ( )", []tk{
			{Operator, "=="}, {Operator, "="}, {Operator, "<>"}, {Operator, "!="}, {Operator, "<="}, {Operator, ">="},
			{Operator, "<<"}, {Operator, ">>"}, {Operator, "||"}, {Operator, "|"}, {Operator, "->"}, {Operator, "->>"},
			{Operator, "-"}, {Operator, "/"}, {Operator, "*"}, {Operator, "%"}, {Operator, "&"}, {Operator, "~"},
			{Operator, "+"}, {Operator, "("}, {Operator, ")"},
		}},
		{"comment markers in strings", "'--' '/*'", []tk{{String, "'--'"}, {String, "'/*'"}}},
		{"line comment hides semicolon", "a -- ; b\nc", []tk{{Word, "a"}, {Word, "c"}}},
		{"block comment hides semicolon", "a /* ; */ b", []tk{{Word, "a"}, {Word, "b"}}},
		{"shortest block comment", "a/**/b", []tk{{Word, "a"}, {Word, "b"}}},
		{"quote in comment", "a -- it's\nb", []tk{{Word, "a"}, {Word, "b"}}},
		{"vertical tab after space", "a \vb", []tk{{Word, "a"}, {Word, "b"}}},
		{"vertical tab after line comment", "a -- c\n\vb", []tk{{Word, "a"}, {Word, "b"}}},
		{"minus minus is comment", "1--2", []tk{{Number, "1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := Tokens(tt.sql)
			if err != nil {
				t.Fatalf("Tokens(%q): %v", tt.sql, err)
			}
			var got []tk
			for _, tok := range toks {
				got = append(got, tk{tok.Kind, tok.Text})
				if tt.sql[tok.Pos:tok.End()] != tok.Text {
					t.Errorf("token %q at %d does not match source", tok.Text, tok.Pos)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Tokens(%q) =\n %v\nwant\n %v", tt.sql, got, tt.want)
			}
		})
	}
}

func TestTokensErrors(t *testing.T) {
	tests := []struct {
		sql string
		err error
		pos int
	}{
		{"SELECT 'abc", ErrUnterminated, 7},
		{"SELECT 'it''s", ErrUnterminated, 7},
		{`SELECT "abc`, ErrUnterminated, 7},
		{"SELECT `abc", ErrUnterminated, 7},
		{"SELECT [abc", ErrUnterminated, 7},
		{"SELECT x'ab", ErrUnterminated, 7},
		{"SELECT 1 /* abc", ErrUnterminated, 9},
		{"SELECT 1 /*/", ErrUnterminated, 9},
		{"SELECT x'abc'", ErrIllegal, 7},
		{"SELECT x'zz'", ErrIllegal, 7},
		{"SELECT 1abc", ErrIllegal, 7},
		{"SELECT 1e", ErrIllegal, 7},
		{"SELECT 0x", ErrIllegal, 7},
		{"SELECT 1 ! 2", ErrIllegal, 9},
		{"SELECT 1 ^ 2", ErrIllegal, 9},
		{"SELECT \\", ErrIllegal, 7},
		{"SELECT {}", ErrIllegal, 7},
		{"SELECT\v1", ErrIllegal, 6},
		{"SELECT [a]]", ErrIllegal, 10},
		{"SELECT 1 /**/\v", ErrIllegal, 13},
		{"SELECT $", ErrIllegal, 7},
		{"SELECT :", ErrIllegal, 7},
		{"SELECT @ a", ErrIllegal, 7},
		{"SELECT $a(')", ErrIllegal, 7},
		{"SELECT 1\x00; DROP TABLE t", ErrIllegal, 8},
		{"SELECT '\x00'", ErrIllegal, 8},
	}
	for _, tt := range tests {
		_, err := Tokens(tt.sql)
		if !errors.Is(err, tt.err) {
			t.Errorf("Tokens(%q) error = %v, want %v", tt.sql, err, tt.err)
			continue
		}
		var pe *PosError
		if !errors.As(err, &pe) || pe.Pos != tt.pos {
			t.Errorf("Tokens(%q) error = %v, want position %d", tt.sql, err, tt.pos)
		}
	}
}

func TestTokenIsWord(t *testing.T) {
	tok := Token{Kind: Word, Text: "ReTuRnInG"}
	if !tok.IsWord("RETURNING") || !tok.IsWord("returning") || tok.IsWord("RETURN") {
		t.Error("IsWord does not compare case-insensitively")
	}
	if (Token{Kind: QuotedIdent, Text: "returning"}).IsWord("returning") {
		t.Error("IsWord matched a non-word token")
	}
	// The Kelvin sign folds to "k" in Unicode but not in SQLite.
	if (Token{Kind: Word, Text: "\u212aey"}).IsWord("key") {
		t.Error("IsWord used Unicode case folding")
	}
	if Word.String() != "Word" || Kind(0).String() != "Kind(0)" {
		t.Errorf("Kind.String: %v %v", Word, Kind(0))
	}
}
