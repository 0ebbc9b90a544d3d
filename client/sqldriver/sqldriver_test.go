package sqldriver_test

import (
	"context"
	"database/sql"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/client"
	_ "github.com/outpost-edge/outpost/client/sqldriver"
	"github.com/outpost-edge/outpost/node"
)

const testSchema = `
CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT NOT NULL DEFAULT '', n INTEGER, r REAL, b BLOB);
`

func openDB(t *testing.T) (*sql.DB, string) {
	t.Helper()
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(testSchema), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{
		DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0", APIToken: "tok",
		Identity: outpost.Identity{Name: "X1", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "12ab"},
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Serve()
	t.Cleanup(func() { n.Close(context.Background()) })
	db, err := sql.Open("outpost", n.APIURL()+"?token=tok")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, n.APIURL()
}

// TestDriver: Exec, Query, QueryRow, args, RETURNING through Query,
// transactions buffered to Commit, column types, errors.
func TestDriver(t *testing.T) {
	db, url := openDB(t)
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := db.ExecContext(ctx, `INSERT INTO pages (id, title, n, r, b) VALUES (?, ?, ?, ?, ?)`, "a", "Hello", int64(math.MaxInt64), 1.0, []byte("xy"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("rows affected %d, %v", n, err)
	}
	var (
		title string
		n     int64
		r     float64
		b     []byte
	)
	if err := db.QueryRowContext(ctx, `SELECT title, n, r, b FROM pages WHERE id = ?`, "a").Scan(&title, &n, &r, &b); err != nil {
		t.Fatal(err)
	}
	if title != "Hello" || n != math.MaxInt64 || r != 1.0 || string(b) != "xy" {
		t.Fatalf("got %q %d %v %q", title, n, r, b)
	}
	rows, err := db.QueryContext(ctx, `SELECT id, n, r, title, b, NULL AS z FROM pages`)
	if err != nil {
		t.Fatal(err)
	}
	cts, err := rows.ColumnTypes()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ct := range cts {
		got = append(got, ct.DatabaseTypeName())
	}
	if strings.Join(got, ",") != "TEXT,INTEGER,REAL,TEXT,BLOB," {
		t.Fatalf("column types %v", got)
	}
	rows.Close()

	// RETURNING through Query.
	var id string
	if err := db.QueryRowContext(ctx, `INSERT INTO pages (id, title) VALUES (?, ?) RETURNING id`, "b", "B").Scan(&id); err != nil || id != "b" {
		t.Fatalf("returning: %q, %v", id, err)
	}

	// A transaction: all or nothing, sent at Commit.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO pages (id) VALUES (?)`, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.QueryContext(ctx, `SELECT 1`); err == nil {
		t.Fatal("query inside a write transaction accepted")
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO pages (id) VALUES (?)`, "a"); err != nil { // duplicate: fails at Commit
		t.Fatal(err)
	}
	err = tx.Commit()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != "constraint_violation" || ce.Statement != 1 {
		t.Fatalf("commit: %v", err)
	}
	var count int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pages`).Scan(&count); err != nil || count != 2 {
		t.Fatalf("count %d, %v after a failed commit", count, err)
	}
	tx, _ = db.BeginTx(ctx, nil)
	_, _ = tx.ExecContext(ctx, `INSERT INTO pages (id) VALUES (?)`, "c")
	_, _ = tx.ExecContext(ctx, `UPDATE pages SET n = 5 WHERE id = ?`, "c")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx, _ = db.BeginTx(ctx, nil)
	_, _ = tx.ExecContext(ctx, `INSERT INTO pages (id) VALUES (?)`, "d")
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pages WHERE n = 5 OR id = 'd'`).Scan(&count); err != nil || count != 1 {
		t.Fatalf("count %d, %v", count, err)
	}
	// Read-only transaction: queries work, writes are refused.
	ro, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.QueryRowContext(ctx, `SELECT count(*) FROM pages`).Scan(&count); err != nil || count != 3 {
		t.Fatalf("read-only tx: %d, %v", count, err)
	}
	if _, err := ro.ExecContext(ctx, `DELETE FROM pages`); err == nil {
		t.Fatal("exec in a read-only tx accepted")
	}
	_ = ro.Rollback()

	// Errors and named args.
	if _, err := db.ExecContext(ctx, `INSERT INTO nope VALUES (1)`); !errors.As(err, &ce) || ce.Code != "no_such_table" {
		t.Fatalf("err = %v", err)
	}
	if _, err := db.ExecContext(ctx, `SELECT :a`, sql.Named("a", 1)); err == nil {
		t.Fatal("named arg accepted")
	}
	// Bad token.
	bad, _ := sql.Open("outpost", url+"?token=wrong")
	defer bad.Close()
	if err := bad.QueryRowContext(ctx, `SELECT 1`).Scan(&count); !errors.As(err, &ce) || ce.Status != 401 {
		t.Fatalf("wrong token: %v", err)
	}
}
