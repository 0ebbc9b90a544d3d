// Package policy decides who may do what between Outpost nodes (DESIGN.md
// section 2): which role may start a pull or a push with which other role (the
// push/pull matrix), and which role may write which table (write
// permissions, checked at ingest against a change's origin node).
//
// Both are data, not code paths: the matrix is a small table of Cells that
// Default returns and a config file may override; write permissions are
// comment directives in the schema file.
//
// # Push/pull matrix
//
// A Cell says, for an initiator role, a target role and how their farms
// relate (any, same or other), whether the initiator may pull (receive the
// target's changes) and push (send its own changes). Matrix.Check picks the
// most specific cell that matches two parties, so a same-farm or other-farm
// cell beats an any-farm cell for the same pair of roles; with no matching
// cell the exchange is refused. Two parties are in the same farm only when
// both farms are non-empty and equal. Trust (is the peer on the trust list at
// all) is checked elsewhere, before the matrix is consulted. The default
// matrix is:
//
//	initiator -> target    farm    pull  push  call
//	master -> master       any     yes   yes   yes
//	master -> node         any     yes   yes   yes
//	master -> edge         any     yes   yes   yes
//	node -> master         any     yes   yes   yes
//	node -> node           any     yes   yes   yes
//	node -> edge           any     yes   yes   yes
//	edge -> master         any     yes   no    yes
//	edge -> node           any     yes   no    yes
//	edge -> edge           same    yes   yes   yes
//	edge -> edge           other   no    no    no
//
// Call is the third exchange: a request answered at once, with no stream of
// changes (the global rate limiter's claims, forwarded decisions and
// announces). An edge may call its farm siblings and the core; masters and
// nodes may call anyone; edges of different farms never call each other.
//
// # Matrix overrides file
//
// ParseOverrides and LoadOverrides read cells that Matrix.With lays over a
// matrix: an override replaces the cell with the same initiator, target and
// farm relation, or adds a cell when there is none. The format is one cell
// per line:
//
//	# comments start with '#', anywhere on a line; blank lines are ignored
//	edge -> master pull=yes push=no
//	edge -> edge farm=other pull=no push=no
//	node -> node farm=same pull=yes push=yes
//
// A line is an initiator role, an arrow "->" ("→" is accepted too), a target
// role, then key=value settings separated by spaces: pull and push are
// required (yes, no, true or false), farm is optional (any, same or other;
// default any), call is optional (default: DefaultCall of the cell's roles
// and farm relation, so overrides files written before calls existed keep
// the default call rules). Roles, keys and values are case-insensitive. Errors name the
// line and what to fix: an unknown role, a missing or malformed arrow, an
// unknown or repeated key, a missing pull or push, or a cell given twice in
// the file. Matrix.String renders a matrix in this same format, so its output
// can be edited and loaded back.
//
// # Table write permissions
//
// A schema file declares which roles may write a table with a line comment
// directive, next to the table:
//
//	-- outpost: table prices writable by master, node
//	CREATE TABLE prices (sku TEXT PRIMARY KEY, cents INTEGER NOT NULL);
//
// The keywords (outpost:, table, writable, by) and role names are
// case-insensitive; roles are separated by commas, spaces or both. The table
// name is a plain identifier or a quoted one ("...", `...` or [...]) and is
// matched case-insensitively, as SQLite does. A table with no directive is
// writable by every role. Any "--" comment whose text starts with "outpost:"
// is a directive (also at the end of a line of SQL); "--" inside string
// literals, quoted identifiers and /* block comments */ is not a comment.
// ParsePermissions reports the line of a malformed directive, an unknown role
// or a second directive for the same table.
//
// All parse errors wrap ErrInvalidPolicy; refused writes wrap ErrWriteRefused.
package policy
