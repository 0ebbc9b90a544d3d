package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Stable error codes. They are part of the API: clients switch on them.
const (
	CodeBadRequest          = "bad_request"
	CodeMultipleStatements  = "multiple_statements"
	CodeEmptyStatement      = "empty_statement"
	CodeWrongArgCount       = "wrong_arg_count"
	CodeSyntax              = "sql_syntax_error"
	CodeNoSuchTable         = "no_such_table"
	CodeNoSuchColumn        = "no_such_column"
	CodeNoSuchFunction      = "no_such_function"
	CodeConstraint          = "constraint_violation"
	CodeReadOnly            = "read_only"
	CodeNotAllowed          = "not_allowed"
	CodeSQL                 = "sql_error"
	CodeResultTooLarge      = "result_too_large"
	CodeNotReady            = "not_ready"
	CodeUnavailable         = "unavailable"
	CodeInternal            = "internal"
	CodeTransactionAborted  = "transaction_aborted"
	CodeTooManyStatements   = "too_many_statements"
	CodeStatementRolledBack = "rolled_back"
	// CodeStatementTimeout: a client transaction or query ran past the
	// statement time budget and was stopped; nothing of it was applied.
	CodeStatementTimeout = "statement_timeout"
	// CodeStoreFailed: the database could not commit (e.g. a failed fsync);
	// the store takes no more writes and the node must restart.
	CodeStoreFailed = "store_failed"
	// CodeValueTooLarge: a string or blob over the length limit.
	CodeValueTooLarge = "value_too_large"
)

// Error is an error with a stable code, a message that says what to fix and,
// for a request of several statements, the index of the statement at fault.
type Error struct {
	Code      string
	Message   string
	Statement int // index of the failing statement, -1 when not about one statement
	Err       error
}

func (e *Error) Error() string {
	if e.Statement >= 0 {
		return fmt.Sprintf("statement %d: %s", e.Statement, e.Message)
	}
	return e.Message
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Client reports whether the error is the client's to fix (bad input) rather
// than the node's.
func (e *Error) Client() bool {
	switch e.Code {
	case CodeInternal, CodeUnavailable, CodeTransactionAborted, CodeNotReady, CodeStoreFailed:
		return false
	}
	return true
}

func errorf(code string, stmt int, format string, args ...any) *Error {
	return &Error{Code: code, Statement: stmt, Message: fmt.Sprintf(format, args...)}
}

// classify turns an error from SQLite into an *Error with a stable code.
func classify(err error, stmt int, denied string) *Error {
	var e *Error
	if errors.As(err, &e) {
		if e.Statement < 0 {
			e.Statement = stmt
		}
		return e
	}
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return &Error{Code: CodeUnavailable, Statement: stmt, Message: "the store is closed", Err: err}
	}
	if errors.Is(err, outpost.ErrNotReady) {
		return &Error{Code: CodeNotReady, Statement: stmt, Message: err.Error(), Err: err}
	}
	msg := err.Error()
	var se *sqlite.Error
	code := 0
	if errors.As(err, &se) {
		code = se.Code() & 0xff
		msg = sqlite.ErrorCodeString[se.Code()]
		if m := se.Error(); m != "" {
			msg = m
		}
	}
	msg = cleanMessage(msg)
	out := &Error{Code: CodeSQL, Statement: stmt, Message: msg, Err: err}
	lower := strings.ToLower(msg)
	switch {
	case code == sqlite3.SQLITE_TOOBIG:
		out.Code = CodeValueTooLarge
		out.Message = fmt.Sprintf("a string or blob would be over the %d-byte value limit (%s)", MaxValueBytes, msg)
	case code == sqlite3.SQLITE_CONSTRAINT:
		out.Code = CodeConstraint
	case code == sqlite3.SQLITE_AUTH || strings.Contains(lower, "not authorized"):
		out.Code = CodeNotAllowed
		if denied != "" {
			out.Message = denied
		}
	case code == sqlite3.SQLITE_READONLY:
		out.Code = CodeReadOnly
	case strings.Contains(lower, "no such table"):
		out.Code = CodeNoSuchTable
	case strings.Contains(lower, "no such column") || strings.Contains(lower, "has no column named"):
		out.Code = CodeNoSuchColumn
	case strings.Contains(lower, "no such function"):
		out.Code = CodeNoSuchFunction
	case strings.Contains(lower, "syntax error") || strings.Contains(lower, "incomplete input") || strings.Contains(lower, "unrecognized token"):
		out.Code = CodeSyntax
	case strings.Contains(lower, "missing argument") || strings.Contains(lower, "missing named argument"):
		out.Code = CodeWrongArgCount
	case code == sqlite3.SQLITE_FULL || code == sqlite3.SQLITE_IOERR || code == sqlite3.SQLITE_NOMEM || code == sqlite3.SQLITE_CORRUPT:
		out.Code = CodeInternal
	}
	return out
}

// cleanMessage drops SQLite's generic prefix and numeric suffix:
// "SQL logic error: no such table: x (1)" becomes "no such table: x".
func cleanMessage(m string) string {
	for _, p := range []string{"SQL logic error: ", "constraint failed: "} {
		m = strings.TrimPrefix(m, p)
	}
	if i := strings.LastIndex(m, " ("); i > 0 && strings.HasSuffix(m, ")") {
		if _, err := strconv.Atoi(m[i+2 : len(m)-1]); err == nil {
			m = m[:i]
		}
	}
	return m
}

// isInterrupt reports whether err is SQLite's SQLITE_INTERRUPT.
func isInterrupt(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_INTERRUPT
}
