package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/outpost-edge/outpost"
)

// ParseOverrides reads matrix cells in the overrides file format (see the
// package documentation). Every bad line is reported, each error naming its
// line number; the errors wrap ErrInvalidPolicy.
func ParseOverrides(r io.Reader) ([]Cell, error) {
	return parseOverrides(r, "overrides")
}

// LoadOverrides reads matrix cells from the overrides file at path.
func LoadOverrides(path string) ([]Cell, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy overrides: %w", err)
	}
	defer f.Close()
	return parseOverrides(f, path)
}

func parseOverrides(r io.Reader, src string) ([]Cell, error) {
	var (
		cells []Cell
		errs  []error
		seen  = map[Cell]int{} // key cell (Pull, Push false) -> line
	)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		c, err := parseCell(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: %s line %d: %s", ErrInvalidPolicy, src, n, err))
			continue
		}
		key := Cell{From: c.From, To: c.To, Farm: c.Farm}
		if first, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%w: %s line %d: duplicate cell %q, already given on line %d; keep one of them",
				ErrInvalidPolicy, src, n, c.Rule(), first))
			continue
		}
		seen[key] = n
		cells = append(cells, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("policy overrides %s: %w", src, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cells, nil
}

const cellExample = `e.g. "edge -> master pull=yes push=no"`

// parseCell parses one non-empty, comment-free line.
func parseCell(line string) (Cell, error) {
	line = strings.ReplaceAll(line, "→", "->")
	switch strings.Count(line, "->") {
	case 0:
		return Cell{}, fmt.Errorf(`no arrow: write "<role> -> <role> pull=yes|no push=yes|no", %s`, cellExample)
	case 1:
	default:
		return Cell{}, fmt.Errorf(`more than one "->": a line is one cell, %s`, cellExample)
	}
	left, right, _ := strings.Cut(line, "->")
	left, right = strings.TrimSpace(left), strings.TrimSpace(right)
	if strings.HasSuffix(left, "-") || strings.HasSuffix(left, "<") || strings.HasPrefix(right, ">") {
		return Cell{}, fmt.Errorf(`malformed arrow: write "->" between the two roles, %s`, cellExample)
	}
	if left == "" {
		return Cell{}, fmt.Errorf(`missing initiator role before "->", %s`, cellExample)
	}
	if f := strings.Fields(left); len(f) != 1 {
		return Cell{}, fmt.Errorf(`want one initiator role before "->", got %q; settings go after the target role, %s`, left, cellExample)
	}
	fields := strings.Fields(right)
	if len(fields) == 0 {
		return Cell{}, fmt.Errorf(`missing target role after "->", %s`, cellExample)
	}
	var (
		c   = Cell{Farm: FarmAny}
		err error
	)
	if c.From, err = parseRoleName(left); err != nil {
		return Cell{}, err
	}
	if c.To, err = parseRoleName(fields[0]); err != nil {
		return Cell{}, err
	}
	set := map[string]bool{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Cell{}, fmt.Errorf("want key=value after the roles, got %q (keys: farm, pull, push, call; no spaces around '=')", f)
		}
		k = strings.ToLower(k)
		if set[k] {
			return Cell{}, fmt.Errorf("duplicate key %q; give each of farm, pull, push and call at most once", k)
		}
		set[k] = true
		switch k {
		case "farm":
			switch rel := FarmRelation(strings.ToLower(v)); rel {
			case FarmAny, FarmSame, FarmOther:
				c.Farm = rel
			default:
				return Cell{}, fmt.Errorf("farm=%q: want farm=any, farm=same or farm=other", v)
			}
		case "pull", "push", "call":
			b, ok := parseYesNo(v)
			if !ok {
				return Cell{}, fmt.Errorf("%s=%q: want %s=yes or %s=no (true and false are accepted too)", k, v, k, k)
			}
			switch k {
			case "pull":
				c.Pull = b
			case "push":
				c.Push = b
			default:
				c.Call = b
			}
		default:
			return Cell{}, fmt.Errorf("unknown key %q; want farm, pull, push or call", k)
		}
	}
	var missing []string
	for _, k := range []string{"pull", "push"} {
		if !set[k] {
			missing = append(missing, k+"=yes|no")
		}
	}
	if len(missing) > 0 {
		return Cell{}, fmt.Errorf("missing %s; every cell states both pull and push", strings.Join(missing, " and "))
	}
	if !set["call"] {
		c.Call = DefaultCall(c.From, c.To, c.Farm)
	}
	return c, nil
}

func parseRoleName(s string) (outpost.Role, error) {
	r := outpost.Role(strings.ToLower(s))
	if !validRole(r) {
		return "", fmt.Errorf("unknown role %q; want master, node or edge", s)
	}
	return r, nil
}

func parseYesNo(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "yes", "true":
		return true, true
	case "no", "false":
		return false, true
	}
	return false, false
}
