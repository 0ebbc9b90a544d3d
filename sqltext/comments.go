package sqltext

import "strings"

// Comment is a "--" comment of SQL text.
type Comment struct {
	Line int    // 1-based line of the "--"
	Text string // after "--", up to the end of the line
}

// LineComments returns the "--" comments of sql, skipping string literals,
// quoted identifiers and block comments.
func LineComments(sql string) []Comment {
	var (
		out      []Comment
		line     = 1
		counted  = 0 // sql[:counted] has been counted into line
		lineOf   = func(pos int) int { line += strings.Count(sql[counted:pos], "\n"); counted = pos; return line }
		skipPast = func(i int, end string) int {
			if j := strings.Index(sql[i:], end); j >= 0 {
				return i + j + len(end)
			}
			return len(sql)
		}
	)
	for i := 0; i < len(sql); {
		switch c := sql[i]; {
		case c == '\'' || c == '"' || c == '`':
			i = skipPast(i+1, string(c)) // a doubled quote closes and reopens
		case c == '[':
			i = skipPast(i+1, "]")
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			i = skipPast(i+2, "*/")
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			end := strings.IndexByte(sql[i:], '\n')
			if end < 0 {
				end = len(sql) - i
			}
			out = append(out, Comment{Line: lineOf(i), Text: sql[i+2 : i+end]})
			i += end
		default:
			i++
		}
	}
	return out
}
