package merge

// Cell is one column's version and value in a Row.
type Cell struct {
	Version Version
	Val     any
}

// Row is the merge state of one row: the reference model of what a store
// keeps in its clock table and data table.
type Row struct {
	CL       int64
	Sentinel Version
	Cols     map[string]Cell // current life only
}

// Apply merges one change into r and reports what it decided.
func (r *Row) Apply(col string, val any, cl int64, v Version) Action {
	local := Local{CL: r.CL, Sentinel: r.Sentinel}
	if c, ok := r.Cols[col]; ok && col != "" {
		local.HasCol, local.Col = true, c.Version
	}
	a := Decide(local, col, cl, v)
	switch a {
	case NewLife:
		r.CL, r.Sentinel, r.Cols = cl, v, nil
		if col != "" && Alive(cl) {
			r.Cols = map[string]Cell{col: {Version: v, Val: val}}
		}
	case ApplyColumn:
		if r.Cols == nil {
			r.Cols = map[string]Cell{}
		}
		r.Cols[col] = Cell{Version: v, Val: val}
	case BumpSentinel:
		r.Sentinel = v
	}
	return a
}

// Visible returns the row's column values as a reader sees them (defaults
// for columns without a version in this life) and whether the row exists.
func (r *Row) Visible(columns []string, defaults map[string]any) (map[string]any, bool) {
	if !Alive(r.CL) {
		return nil, false
	}
	out := make(map[string]any, len(columns))
	for _, c := range columns {
		if cell, ok := r.Cols[c]; ok {
			out[c] = cell.Val
		} else {
			out[c] = defaults[c]
		}
	}
	return out, true
}
