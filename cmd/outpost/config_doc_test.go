package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// commandFlags builds every subcommand's FlagSet (by asking it for -h) and
// returns its flags by command name, in the order the command has them.
func commandFlags(t *testing.T) map[string][]*flag.Flag {
	t.Helper()
	out := map[string][]*flag.Flag{}
	var got *flag.FlagSet
	flagSetHook = func(_ string, fs *flag.FlagSet) { got = fs }
	defer func() { flagSetHook = nil }()
	for _, c := range commands() {
		if c.run == nil {
			continue
		}
		got = nil
		if err := c.run(context.Background(), []string{"-h"}, io.Discard, io.Discard); err == nil {
			t.Fatalf("%s -h: no help", c.name)
		}
		if got == nil {
			t.Fatalf("%s: made no FlagSet", c.name)
		}
		got.VisitAll(func(f *flag.Flag) { out[c.name] = append(out[c.name], f) })
	}
	return out
}

// configSections splits docs/CONFIG.md into its "## `outpost NAME`" sections.
func configSections(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{}
	re := regexp.MustCompile("(?m)^## `outpost ([a-z0-9-]+)`")
	idx := re.FindAllStringSubmatchIndex(string(b), -1)
	for i, m := range idx {
		end := len(b)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		sections[string(b[m[2]:m[3]])] = string(b[m[1]:end])
	}
	return sections
}

// TestConfigDoc_EveryFlag: docs/CONFIG.md documents every flag of every
// subcommand, in the command's own section, with its environment variable.
// A failure prints the missing table rows, made from the flag sets.
func TestConfigDoc_EveryFlag(t *testing.T) {
	sections := configSections(t)
	for name, flags := range commandFlags(t) {
		sec, ok := sections[name]
		var missing []string
		for _, f := range flags {
			env := "OUTPOST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
			if !ok || !regexp.MustCompile("`--"+regexp.QuoteMeta(f.Name)+"[` ]").MatchString(sec) || !strings.Contains(sec, env) {
				missing = append(missing, flagRow(f))
			}
		}
		if !ok {
			t.Errorf("docs/CONFIG.md has no section \"## `outpost %s`\"; its flags:\n%s", name, strings.Join(missing, "\n"))
		} else if len(missing) > 0 {
			t.Errorf("docs/CONFIG.md, section outpost %s, lacks (with its environment variable):\n%s", name, strings.Join(missing, "\n"))
		}
	}
}

// flagRow renders f as a row of the CONFIG.md tables.
func flagRow(f *flag.Flag) string {
	typ, usage := flag.UnquoteUsage(f)
	arg := ""
	switch typ {
	case "string":
		arg = " S"
	case "duration":
		arg = " D"
	case "int", "uint", "float":
		arg = " N"
	case "":
	default:
		arg = " " + typ
	}
	def := "`" + f.DefValue + "`"
	switch f.DefValue {
	case "":
		def = "none"
	case "0":
		if typ == "" {
			def = "false"
		}
	}
	env := "OUTPOST_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
	return fmt.Sprintf("| `--%s%s` | `%s` | %s | %s |", f.Name, arg, env, def, strings.ReplaceAll(usage, "|", "\\|"))
}
