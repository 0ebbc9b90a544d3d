package store

import (
	"fmt"
	"reflect"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"
)

// The driver (modernc.org/sqlite) exports neither sqlite3_interrupt for a
// call already under way nor sqlite3_limit for a pooled connection, and it
// interrupts a query only while its first row is being computed (the
// context watcher ends when QueryContext returns). The store needs both, so
// it reads the connection's sqlite3* handle from the driver's connection
// (fields db and tls of its *conn) once, when the connection is opened.
// Test coverage: TestStatementTimeout_*, TestValueLengthLimit.

// handle is a connection's sqlite3* pointer.
type handle uintptr

// rawHandle returns the sqlite3* of a driver connection (the value
// database/sql's Conn.Raw or the driver's connection hook passes) and its
// libc thread state.
func rawHandle(driverConn any) (handle, *libc.TLS, error) {
	v := reflect.ValueOf(driverConn)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return 0, nil, fmt.Errorf("sqlite handle: unexpected driver connection %T", driverConn)
	}
	e := v.Elem()
	db, tls := e.FieldByName("db"), e.FieldByName("tls")
	if !db.IsValid() || db.Kind() != reflect.Uintptr || !tls.IsValid() || tls.Type() != reflect.TypeFor[*libc.TLS]() {
		return 0, nil, fmt.Errorf("sqlite handle: driver connection %T has no db/tls fields (driver version changed?)", driverConn)
	}
	return handle(db.Uint()), (*libc.TLS)(tls.UnsafePointer()), nil
}

// interrupt makes the statement running on h, if any, stop with
// SQLITE_INTERRUPT. It is safe from any goroutine while the connection is
// open; it uses a thread state of its own, as the driver does.
func (h handle) interrupt() {
	tls := libc.NewTLS()
	sqlite3.Xsqlite3_interrupt(tls, uintptr(h))
	tls.Close()
}

// inTransaction reports whether the connection has a transaction open.
// Call it only from the goroutine that owns the connection, between
// statements.
func (h handle) inTransaction() bool {
	tls := libc.NewTLS()
	defer tls.Close()
	return sqlite3.Xsqlite3_get_autocommit(tls, uintptr(h)) == 0
}

// setMaxLength sets SQLITE_LIMIT_LENGTH, the largest string or blob (and
// row) the connection may build. Call it from the goroutine that opened
// the connection (the driver's connection hook).
func setMaxLength(tls *libc.TLS, h handle, n int) {
	sqlite3.Xsqlite3_limit(tls, uintptr(h), sqlite3.SQLITE_LIMIT_LENGTH, int32(n))
}
