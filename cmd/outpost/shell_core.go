package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/outpost-edge/outpost/client"
	"github.com/outpost-edge/outpost/node"
	"github.com/outpost-edge/outpost/sqltext"
)

// errInterrupted is returned by a lineSource when the user pressed Ctrl-C
// while typing: the current input is dropped.
var errInterrupted = errors.New("interrupted")

// lineSource is where the shell reads its input: a terminal with line
// editing and history, or a plain reader (a pipe, a file, a test).
type lineSource interface {
	// ReadLine returns the next line without its newline, io.EOF at the
	// end, or errInterrupted.
	ReadLine(prompt string) (string, error)
	// SaveHistory records a finished entry (a whole statement or a
	// dot-command).
	SaveHistory(entry string)
}

// readerSource reads lines from an io.Reader, with no prompt and no
// history.
type readerSource struct{ r *bufio.Reader }

func (s readerSource) ReadLine(string) (string, error) {
	line, err := s.r.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}

func (readerSource) SaveHistory(string) {}

// shell is the state of one shell session.
type shell struct {
	c      *client.Client
	target string // base URL, for /v1/status
	token  string
	hc     *http.Client // for /v1/status

	out, errw   io.Writer
	mode        string
	interactive bool // errors never end the session; prompts are shown
	keepGoing   bool // non-interactive: report errors and go on (--continue)
	failed      int  // statements or commands that failed (non-interactive)

	// requestContext, when set, wraps the context of each request (the
	// terminal shell cancels it on Ctrl-C).
	requestContext func(context.Context) (context.Context, context.CancelFunc)
}

const (
	promptMain = "outpost> "
	promptMore = "    ...> "
)

// runShell runs SQL and dot-commands read from in, without a prompt,
// writing results to out and errors to errw: the non-interactive shell
// (outpost shell < file.sql). It stops at the first error and returns it
// (located by line), unless keepGoing, in which case it reports each error
// on errw and returns an error counting them at the end.
func runShell(ctx context.Context, c *client.Client, token string, keepGoing bool, in io.Reader, out, errw io.Writer) error {
	s := &shell{c: c, target: c.URL(), token: token, hc: http.DefaultClient, out: out, errw: errw, mode: modeTable, keepGoing: keepGoing}
	return s.loop(ctx, readerSource{bufio.NewReader(in)})
}

// loop reads input until the end (or .quit), collecting lines until they
// end a statement (sqltext's rules: a ";" outside strings, comments and
// trigger bodies) and running each statement. A dot-command is a line that
// starts with "." while no statement is pending.
func (s *shell) loop(ctx context.Context, src lineSource) error {
	var buf strings.Builder
	var lines []string
	lineNo, startLine := 0, 0
	for {
		prompt := promptMain
		if buf.Len() > 0 {
			prompt = promptMore
		}
		line, err := src.ReadLine(prompt)
		switch {
		case errors.Is(err, errInterrupted):
			buf.Reset()
			lines = lines[:0]
			continue
		case err == io.EOF:
			if strings.TrimSpace(buf.String()) != "" {
				if err := s.runText(ctx, buf.String(), startLine); err != nil {
					return err
				}
			}
			return s.finish()
		case err != nil:
			return err
		}
		lineNo++
		if buf.Len() == 0 {
			t := strings.TrimSpace(line)
			if t == "" {
				continue
			}
			if strings.HasPrefix(t, ".") {
				src.SaveHistory(t)
				quit, err := s.dot(ctx, t)
				if err != nil {
					if err := s.fail(err, lineNo); err != nil {
						return err
					}
				}
				if quit {
					return s.finish()
				}
				continue
			}
			startLine = lineNo
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		lines = append(lines, strings.TrimSpace(line))
		text := buf.String()
		if !complete(text) {
			continue
		}
		src.SaveHistory(historyEntry(lines))
		buf.Reset()
		lines = lines[:0]
		if err := s.runText(ctx, text, startLine); err != nil {
			return err
		}
	}
}

// historyEntry is a statement typed over several lines as one history
// line: the lines joined with spaces. A "--" comment would then hide the
// rest, so a statement holding one is rebuilt from its tokens (comments
// dropped).
func historyEntry(lines []string) string {
	joined := strings.Join(lines, " ")
	if len(lines) < 2 || !strings.Contains(joined, "--") {
		return joined
	}
	toks, err := sqltext.Tokens(strings.Join(lines, "\n"))
	if err != nil {
		return joined
	}
	var b strings.Builder
	for i, t := range toks {
		if i > 0 && t.Kind != sqltext.Semicolon {
			b.WriteByte(' ')
		}
		b.WriteString(t.Text)
	}
	return b.String()
}

// finish is the session's result: nil, or how many statements failed when
// errors were reported and skipped (--continue).
func (s *shell) finish() error {
	if s.failed > 0 {
		return fmt.Errorf("%d %s failed", s.failed, plural(s.failed, "statement", "statements"))
	}
	return nil
}

// complete reports whether text ends at the end of a statement: its last
// token is a statement-ending ";" (not one inside a string, a comment or a
// CREATE TRIGGER body), or it holds only whitespace and comments. Text
// that sqltext cannot lex for another reason than an unfinished token
// counts as complete once its last line ends with ";", so that the node
// reports the error.
func complete(text string) bool {
	stmts, err := sqltext.Split(text)
	if err != nil {
		if errors.Is(err, sqltext.ErrUnterminated) {
			return false
		}
		return strings.HasSuffix(strings.TrimSpace(text), ";")
	}
	// A statement that is still open absorbs a word added on a new line;
	// after a statement-ending ";" the word is a statement of its own.
	more, err := sqltext.Split(text + "\nx")
	return err == nil && len(more) == len(stmts)+1
}

// runText runs every statement of text in order, each as its own request.
// startLine is the input line text starts at, for error messages.
func (s *shell) runText(ctx context.Context, text string, startLine int) error {
	stmts, err := sqltext.Split(text)
	if err != nil {
		return s.fail(err, startLine)
	}
	pos := 0
	for _, st := range stmts {
		if i := strings.Index(text[pos:], st); i >= 0 {
			pos += i
		}
		line := startLine + strings.Count(text[:pos], "\n")
		pos += len(st)
		if err := s.runStatement(ctx, st); err != nil {
			if err := s.fail(err, line); err != nil {
				return err
			}
		}
	}
	return nil
}

// isRead reports whether a statement with this verb (sqltext.Verb) is a
// read, sent to /v1/query; everything else goes to /v1/exec.
func isRead(verb string) bool {
	switch verb {
	case "SELECT", "VALUES", "EXPLAIN", "PRAGMA":
		return true
	}
	return false
}

// runStatement sends one statement to the node and prints its answer.
func (s *shell) runStatement(ctx context.Context, sql string) error {
	if s.requestContext != nil {
		var cancel context.CancelFunc
		ctx, cancel = s.requestContext(ctx)
		defer cancel()
	}
	if isRead(sqltext.Verb(sql)) {
		res, err := s.c.Query(ctx, sql)
		if err != nil {
			return interrupted(ctx, err, false)
		}
		return writeRows(s.out, s.mode, res.Columns, res.Rows)
	}
	res, err := s.c.Exec(ctx, client.Stmt(sql))
	if err != nil {
		return interrupted(ctx, err, true)
	}
	if len(res.Results) == 1 && res.Results[0].Columns != nil {
		return writeRows(s.out, s.mode, res.Results[0].Columns, res.Results[0].Rows)
	}
	if s.mode == modeTable {
		n := int64(0)
		if len(res.Results) == 1 {
			n = res.Results[0].RowsAffected
		}
		fmt.Fprintf(s.out, "%d %s affected (db_version %d)\n", n, plural(int(n), "row", "rows"), res.DBVersion)
	}
	return nil
}

// interrupted turns the error of a request cancelled by Ctrl-C into a
// plain message; a write's answer was lost, so it may have been applied.
func interrupted(ctx context.Context, err error, write bool) error {
	if ctx.Err() == nil {
		return err
	}
	if write {
		return errors.New("interrupted (the write may have been applied: check before running it again)")
	}
	return errors.New("interrupted")
}

// fail reports err. Interactively, or with --continue, it prints it and
// returns nil; otherwise it returns it, located by input line, to end the
// session.
func (s *shell) fail(err error, line int) error {
	msg := errorText(err)
	switch {
	case s.interactive:
		fmt.Fprintf(s.errw, "error: %s\n", msg)
		return nil
	case s.keepGoing:
		s.failed++
		fmt.Fprintf(s.errw, "line %d: %s\n", line, msg)
		return nil
	}
	return fmt.Errorf("line %d: %s", line, msg)
}

// errorText is an error as the shell prints it: "code: message" for an
// error the node answered.
func errorText(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Code + ": " + ce.Message
	}
	return err.Error()
}

const shellHelp = `Statements end with ";" and may span lines. Reads (SELECT, VALUES,
EXPLAIN, PRAGMA) go to /v1/query; anything else to /v1/exec, each statement
its own transaction (a RETURNING clause shows its rows).

.tables            list the tables and views (not Outpost's outpost_* tables)
.schema [TABLE]    show CREATE statements (of TABLE and its indexes and triggers)
.status            the node's name, role, db_version and replication links
.mode [MODE]       show or set the output: table, json (a JSON object per row), csv
.help              this text
.quit              leave (also .exit or Ctrl-D)

Ctrl-C drops the line being typed or stops the running request.
`

// dot runs a dot-command; quit is true for .quit and .exit.
func (s *shell) dot(ctx context.Context, line string) (quit bool, err error) {
	f := strings.Fields(strings.TrimSuffix(line, ";"))
	cmd, args := f[0], f[1:]
	argc := func(lo, hi int) error {
		if len(args) < lo || len(args) > hi {
			return fmt.Errorf("%s: wrong number of arguments (.help for usage)", cmd)
		}
		return nil
	}
	if s.requestContext != nil {
		var cancel context.CancelFunc
		ctx, cancel = s.requestContext(ctx)
		defer cancel()
	}
	switch cmd {
	case ".quit", ".exit":
		return true, argc(0, 0)
	case ".help":
		_, err := io.WriteString(s.out, shellHelp)
		return false, err
	case ".mode":
		if err := argc(0, 1); err != nil {
			return false, err
		}
		if len(args) == 0 {
			_, err := fmt.Fprintln(s.out, s.mode)
			return false, err
		}
		switch m := strings.ToLower(args[0]); m {
		case modeTable, modeJSON, modeCSV:
			s.mode = m
			return false, nil
		}
		return false, fmt.Errorf(".mode %s: want table, json or csv", args[0])
	case ".tables":
		if err := argc(0, 0); err != nil {
			return false, err
		}
		// (pragma_table_list tells a search index's FTS5 tables apart: "shadow".)
		res, err := s.c.Query(ctx, `SELECT name FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'view', 'virtual')
 AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name NOT LIKE 'outpost\_%' ESCAPE '\' ORDER BY name`)
		if err != nil {
			return false, interrupted(ctx, err, false)
		}
		for _, r := range res.Rows {
			fmt.Fprintln(s.out, formatValue(r[0], -1))
		}
		return false, nil
	case ".schema":
		if err := argc(0, 1); err != nil {
			return false, err
		}
		return false, s.schema(ctx, args)
	case ".status":
		if err := argc(0, 0); err != nil {
			return false, err
		}
		return false, s.status(ctx)
	}
	return false, fmt.Errorf("unknown command %s (.help lists them)", cmd)
}

// schema prints the CREATE statements of the schema, in creation order,
// or those of one table (its indexes and triggers too). Outpost's own
// outpost_* tables and triggers are hidden unless the table asked for is
// one of them.
func (s *shell) schema(ctx context.Context, args []string) error {
	q := `SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\_%' ESCAPE '\'`
	var qargs []any
	internal := false
	if len(args) == 1 {
		q += ` AND (lower(tbl_name) = lower(?) OR lower(name) = lower(?))`
		qargs = []any{args[0], args[0]}
		internal = strings.HasPrefix(strings.ToLower(args[0]), "outpost_")
	}
	if !internal {
		q += ` AND name NOT LIKE 'outpost\_%' ESCAPE '\' AND tbl_name NOT LIKE 'outpost\_%' ESCAPE '\'`
	}
	q += ` ORDER BY rowid`
	res, err := s.c.Query(ctx, q, qargs...)
	if err != nil {
		return interrupted(ctx, err, false)
	}
	if len(res.Rows) == 0 && len(args) == 1 {
		fmt.Fprintf(s.errw, "no table or view named %s\n", args[0])
	}
	for _, r := range res.Rows {
		fmt.Fprintf(s.out, "%s;\n", formatValue(r[0], -1))
	}
	return nil
}

// status prints a summary of the node's GET /v1/status.
func (s *shell) status(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(s.target)+"/v1/status", nil)
	if err != nil {
		return err
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return interrupted(ctx, err, false)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var env struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &env) == nil && env.Error.Code != "" {
			return &client.Error{Status: resp.StatusCode, Code: env.Error.Code, Message: env.Error.Message, Statement: -1}
		}
		return fmt.Errorf("/v1/status: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var st node.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("/v1/status: %w", err)
	}
	fmt.Fprintf(s.out, "%s (%s%s)  db_version %d  incarnation %s  slugs ready %v\n",
		st.Name, st.Role, farmSuffix(st.Farm), st.DBVersion, st.Incarnation, st.SlugsReady)
	up, maxLag, maxLagS := 0, int64(0), 0.0
	for _, l := range st.Links {
		if l.Connected {
			up++
		}
		if l.LagChanges != nil && l.LagSeconds != nil {
			maxLag, maxLagS = max(maxLag, *l.LagChanges), max(maxLagS, *l.LagSeconds)
		}
	}
	fmt.Fprintf(s.out, "links: %d (%d connected), max lag %d db_versions / %.1f s\n", len(st.Links), up, maxLag, maxLagS)
	fmt.Fprintf(s.out, "replication: applied %d, ignored %d, refused %d, held %d\n",
		st.Replication.Applied, st.Replication.Ignored, st.Replication.Refused, st.Replication.Held)
	for _, l := range st.Links {
		state := "down"
		switch {
		case l.Standby:
			state = "standby"
		case l.Connected:
			state = "up"
		}
		lag, lagS := lagText(l)
		fmt.Fprintf(s.out, "  %-4s %-16s %-7s lag %s / %s s", l.Direction, l.Peer, state, lag, lagS)
		if l.LastError != "" {
			fmt.Fprintf(s.out, "  last error: %s", l.LastError)
		}
		fmt.Fprintln(s.out)
	}
	return nil
}
