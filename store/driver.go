package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"net/url"
	"strings"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/capture"
	"modernc.org/sqlite"
)

// connector opens connections through a Driver of our own, so the SQL
// functions it registers (which know this node's identity and its current
// transaction) reach only this store's connections, even with many nodes in
// one process.
type connector struct {
	drv *sqlite.Driver
	dsn string
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.drv.Open(c.dsn)
}

func (c connector) Driver() driver.Driver { return c.drv }

func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return path + "?" + q.Encode()
}

// openWriterDB opens the single writer connection's pool.
func (s *Store) openWriterDB(path string) (*sql.DB, error) {
	drv := &sqlite.Driver{}
	fns := map[string]func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error){
		"outpost_capture": func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
			tx := s.cur
			if tx == nil {
				return nil, fmt.Errorf("outpost: write to a replicated table outside an Outpost transaction; write through the Outpost API so the change is captured and replicated")
			}
			if tx.capture {
				return int64(1), nil
			}
			return int64(0), nil
		},
		"outpost_hlc":    func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) { return s.curTx().hlc, nil },
		"outpost_dbv":    func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) { return s.curTx().dbv, nil },
		"outpost_origin": func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) { return s.Origin(), nil },
	}
	for name, fn := range fns {
		if err := drv.RegisterScalarFunction(name, 0, fn); err != nil {
			return nil, fmt.Errorf("register %s: %w", name, err)
		}
	}
	if err := drv.RegisterScalarFunction("outpost_id", 0, s.sqlID); err != nil {
		return nil, fmt.Errorf("register outpost_id: %w", err)
	}
	if err := drv.RegisterScalarFunction("outpost_slug", 1, s.sqlSlug); err != nil {
		return nil, fmt.Errorf("register outpost_slug: %w", err)
	}
	drv.RegisterConnectionHook(limitHook)
	db := sql.OpenDB(connector{drv: drv, dsn: dsn(path,
		// A new database frees pages as the log is collected (CollectLog
		// runs incremental_vacuum); the WAL is truncated back to 64 MiB
		// after a checkpoint that let it grow past that.
		"auto_vacuum(INCREMENTAL)", "journal_size_limit(67108864)",
		"journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(0)", "recursive_triggers(0)", "busy_timeout(10000)",
		// Savepoint journals stay in memory: one per client transaction would
		// otherwise cost a temp-file write per page touched.
		"temp_store(MEMORY)", "cache_size(-65536)")})
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// openReaderDB opens the pool of read-only connections.
func (s *Store) openReaderDB(path string, n int) (*sql.DB, error) {
	drv := &sqlite.Driver{}
	if err := drv.RegisterScalarFunction("outpost_id", 0, s.sqlID); err != nil {
		return nil, fmt.Errorf("register outpost_id: %w", err)
	}
	if err := drv.RegisterScalarFunction("outpost_slug", 1, func(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
		return nil, fmt.Errorf("outpost_slug() issues a slug, which is a write: call it in /v1/exec")
	}); err != nil {
		return nil, fmt.Errorf("register outpost_slug: %w", err)
	}
	drv.RegisterConnectionHook(func(c sqlite.ExecQuerierContext, _ string) error {
		ar, ok := c.(sqlite.AuthorizerRegisterer)
		if !ok {
			return fmt.Errorf("sqlite driver does not support authorizers")
		}
		return ar.RegisterAuthorizer(readerAuthorizer)
	})
	drv.RegisterConnectionHook(limitHook)
	db := sql.OpenDB(connector{drv: drv, dsn: dsn(path, "query_only(1)", "foreign_keys(0)", "busy_timeout(10000)")})
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// MaxValueBytes is the longest string or blob (and row) a connection
// builds or reads (SQLITE_LIMIT_LENGTH): longer fails at once with
// CodeValueTooLarge instead of taking memory (SQLite's own default is 1 GB).
const MaxValueBytes = 64 << 20

// limitHook sets the length limit on every new connection.
func limitHook(c sqlite.ExecQuerierContext, _ string) error {
	h, tls, err := rawHandle(c)
	if err != nil {
		return err
	}
	setMaxLength(tls, h, MaxValueBytes)
	return nil
}

func (s *Store) curTx() *txContext {
	if s.cur == nil {
		return &txContext{}
	}
	return s.cur
}

func (s *Store) sqlID(*sqlite.FunctionContext, []driver.Value) (driver.Value, error) {
	return s.ids.ID(), nil
}

// sqlSlug is outpost_slug(title) on the writer: it issues the slug and
// records it in the current transaction, which persists it in outpost_slugs.
func (s *Store) sqlSlug(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
	tx := s.cur
	if tx == nil {
		return nil, fmt.Errorf("outpost_slug() must run inside an Outpost transaction")
	}
	if !s.slugsReady.Load() {
		tx.funcErr = fmt.Errorf("%w: this node's database is new and has not caught up with an upstream peer yet, so it cannot know which slugs it issued before; retry once it has caught up (see /v1/status)", outpost.ErrNotReady)
		return nil, tx.funcErr
	}
	var title string
	switch v := args[0].(type) {
	case nil:
		title = ""
	case string:
		title = v
	case []byte:
		title = string(v)
	default:
		title = fmt.Sprint(v)
	}
	slug := s.slugs.Next(title)
	tx.slugs = append(tx.slugs, issuedSlug{slug: slug, title: title})
	return slug, nil
}

// Authorizer decisions. The writer authorizes every statement it prepares;
// app statements (from /v1/exec) are restricted, Outpost's own are not.

var readPragmas = map[string]bool{
	"table_info": true, "table_xinfo": true, "table_list": true, "index_list": true, "index_info": true,
	"index_xinfo": true, "foreign_key_list": true, "collation_list": true, "function_list": true,
	"data_version": true, "user_version": true, "schema_version": true, "page_count": true, "page_size": true,
	"freelist_count": true, "compile_options": true, "encoding": true, "journal_mode": true,
}

func readerAuthorizer(action sqlite.AuthorizerActionCode, arg1, arg2, _, _ string) sqlite.AuthorizerReturnCode {
	switch action {
	case sqlite.AuthSelect, sqlite.AuthRead, sqlite.AuthFunction, sqlite.AuthRecursive:
		return sqlite.AuthorizerOK
	case sqlite.AuthPragma:
		// A read pragma with no value; "PRAGMA query_only=0" would lift the read-only guard.
		name := strings.ToLower(arg1)
		if readPragmas[name] && (arg2 == "" || name == "table_info" || name == "table_xinfo" || name == "index_list" || name == "index_info" || name == "index_xinfo" || name == "foreign_key_list") {
			return sqlite.AuthorizerOK
		}
		return sqlite.AuthorizerDeny
	case sqlite.AuthTransaction:
		// database/sql may wrap reads in BEGIN/COMMIT; they cannot write.
		return sqlite.AuthorizerOK
	}
	return sqlite.AuthorizerDeny
}

// DDLNotAllowed is the message of a refused schema change from a client.
const DDLNotAllowed = "DDL is not allowed in /v1/exec; change the schema file and restart"

// schemaTables are the names of SQLite's schema table; a client statement
// that writes one is a schema change.
var schemaTables = map[string]bool{"sqlite_master": true, "sqlite_schema": true, "sqlite_temp_master": true, "sqlite_temp_schema": true}

// appAuthorizer restricts statements from clients: data changes to user
// tables only; no DDL, transactions, savepoints, ATTACH or PRAGMA, which
// would break group commit, durability or replication.
func (s *Store) appAuthorizer(action sqlite.AuthorizerActionCode, arg1, arg2, _, trigger string) sqlite.AuthorizerReturnCode {
	if !s.appMode || strings.HasPrefix(trigger, capture.Prefix) {
		return sqlite.AuthorizerOK
	}
	deny := func(format string, args ...any) sqlite.AuthorizerReturnCode {
		s.denied = fmt.Sprintf(format, args...)
		return sqlite.AuthorizerDeny
	}
	switch action {
	case sqlite.AuthSelect, sqlite.AuthRead, sqlite.AuthFunction, sqlite.AuthRecursive:
		return sqlite.AuthorizerOK
	case sqlite.AuthInsert, sqlite.AuthUpdate, sqlite.AuthDelete:
		if trigger == "" && strings.HasPrefix(strings.ToLower(arg1), capture.Prefix) {
			return deny("table %q belongs to Outpost and cannot be written by clients", arg1)
		}
		if schemaTables[strings.ToLower(arg1)] {
			// CREATE, DROP and ALTER first ask to write the schema table.
			return deny("%s", DDLNotAllowed)
		}
		if msg := s.searchWriteRefusal(arg1); msg != "" { // search.go
			return deny("%s", msg)
		}
		if strings.HasPrefix(strings.ToLower(arg1), "sqlite_") {
			return deny("table %q is SQLite's own and cannot be written", arg1)
		}
		if s.opts.WriteCheck != nil && !strings.HasPrefix(strings.ToLower(arg1), capture.Prefix) {
			if err := s.opts.WriteCheck(arg1); err != nil {
				return deny("%v", err)
			}
		}
		return sqlite.AuthorizerOK
	}
	if trigger != "" {
		// Inside a user trigger: its own statements were checked when the
		// schema was loaded.
		return sqlite.AuthorizerOK
	}
	switch action {
	case sqlite.AuthTransaction, sqlite.AuthSavepoint:
		return deny("transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT) is not allowed: every /v1/exec request is already one transaction")
	case sqlite.AuthPragma:
		return deny("PRAGMA is not allowed in /v1/exec")
	case sqlite.AuthAttach, sqlite.AuthDetach:
		return deny("ATTACH and DETACH are not allowed")
	default:
		return deny("%s", DDLNotAllowed)
	}
}
