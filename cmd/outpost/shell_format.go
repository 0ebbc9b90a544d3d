package main

import (
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/outpost-edge/outpost/api"
)

// Output modes of the shell (.mode).
const (
	modeTable = "table"
	modeJSON  = "json"
	modeCSV   = "csv"
)

// blobShown is how many bytes of a blob table mode shows before truncating.
const blobShown = 16

// writeRows prints a result (column names and rows of nil, int64, float64,
// string and []byte, as the client returns them) in the given mode:
//
//   - table: a header, a rule and aligned columns (text/tabwriter), then
//     "(N rows)"; NULL as NULL, blobs as x'hex' (truncated past 16 bytes,
//     with the length), control characters in text escaped (\n, \t).
//   - json: one JSON object per row, keys in column order, values in the
//     API's forms (docs/API.md "Values": blobs as {"$blob":"base64"},
//     infinite reals as {"$real":"Infinity"}).
//   - csv: a header record, then one record per row (encoding/csv); NULL
//     as an empty field, blobs as x'hex' in full.
func writeRows(w io.Writer, mode string, cols []string, rows [][]any) error {
	switch mode {
	case modeJSON:
		var b []byte
		for _, row := range rows {
			b = append(b[:0], '{')
			for i, c := range cols {
				if i > 0 {
					b = append(b, ',')
				}
				b = api.AppendString(b, c)
				b = append(b, ':')
				var v any
				if i < len(row) {
					v = row[i]
				}
				b = api.AppendValue(b, v)
			}
			b = append(b, "}\n"...)
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return nil
	case modeCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(cols); err != nil {
			return err
		}
		rec := make([]string, len(cols))
		for _, row := range rows {
			for i := range rec {
				rec[i] = ""
				if i < len(row) && row[i] != nil {
					rec[i] = formatValue(row[i], -1)
				}
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
		cw.Flush()
		return cw.Error()
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		rule := make([]string, len(cols))
		for i, c := range cols {
			rule[i] = strings.Repeat("-", max(len([]rune(c)), 1))
		}
		fmt.Fprintln(tw, strings.Join(escapeCells(cols), "\t"))
		fmt.Fprintln(tw, strings.Join(rule, "\t"))
		cells := make([]string, len(cols))
		for _, row := range rows {
			for i := range cells {
				var v any
				if i < len(row) {
					v = row[i]
				}
				cells[i] = escapeCell(formatValue(v, blobShown))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "(%d %s)\n", len(rows), plural(len(rows), "row", "rows"))
		return err
	}
}

// formatValue renders one value as text: NULL, integers in decimal, reals
// with a fraction or exponent (1.0, not 1; Inf, -Inf), text as is, blobs
// as x'hex'. A blob longer than maxBlob bytes (maxBlob >= 0) is cut and
// marked with "..." and its length.
func formatValue(v any, maxBlob int) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return formatReal(x)
	case string:
		return x
	case []byte:
		if maxBlob >= 0 && len(x) > maxBlob {
			return fmt.Sprintf("x'%s...' (%d bytes)", hex.EncodeToString(x[:maxBlob]), len(x))
		}
		return "x'" + hex.EncodeToString(x) + "'"
	}
	return fmt.Sprint(v)
}

// formatReal writes a REAL so that it reads as one: shortest exact form,
// with ".0" added to a whole number.
func formatReal(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

var cellEscaper = strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`, "\v", `\v`, "\f", `\f`, "\x00", `\0`)

// escapeCell keeps a table cell on one line and out of tabwriter's way.
func escapeCell(s string) string { return cellEscaper.Replace(s) }

func escapeCells(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = escapeCell(s)
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
