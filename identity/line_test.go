package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
)

func TestLineFormat(t *testing.T) {
	pub := mustGenerate(t).Public()
	key := EncodePublicKey(pub)
	tests := []struct {
		name string
		id   outpost.Identity
		addr string
		want string
	}{
		{"edge with addr", edgeID, "edge01.example:7701",
			"name=EDGE01 role=edge farm=lhr location=LHR code=43ax key=" + key + " addr=edge01.example:7701"},
		{"master no farm no addr", masterID, "",
			"name=MASTER1 role=master farm=- location=FRA code=01mm key=" + key},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Line(tt.id, pub, tt.addr); got != tt.want {
				t.Errorf("Line =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestLineRoundTrip(t *testing.T) {
	pub := mustGenerate(t).Public()
	tests := []struct {
		id   outpost.Identity
		addr string
	}{
		{edgeID, "10.0.0.7:7701"},
		{edgeID, ""},
		{masterID, "master.example.com:443"},
		{outpost.Identity{Name: "N2", Location: "AMS", Farm: "ams-1", Role: outpost.RoleNode, Code: "12ab"}, "[::1]:7701"},
	}
	for _, tt := range tests {
		t.Run(tt.id.Name+"/"+tt.addr, func(t *testing.T) {
			line := Line(tt.id, pub, tt.addr)
			p, err := ParseLine(line)
			if err != nil {
				t.Fatalf("ParseLine(%q): %v", line, err)
			}
			if p.Identity != tt.id || !p.Key.Equal(pub) || p.Addr != tt.addr {
				t.Fatalf("ParseLine(%q) = %+v", line, p)
			}
			if p.Line() != line {
				t.Errorf("Peer.Line = %q, want %q", p.Line(), line)
			}
		})
	}
}

func TestParseLineAccepts(t *testing.T) {
	key := EncodePublicKey(mustGenerate(t).Public())
	tests := []struct {
		name string
		line string
		want outpost.Identity
		addr string
	}{
		{"farm omitted", "name=M1 role=master location=FRA code=01mm key=" + key,
			outpost.Identity{Name: "M1", Role: outpost.RoleMaster, Location: "FRA", Code: "01mm"}, ""},
		{"farm dash", "name=M1 role=master farm=- location=FRA code=01mm key=" + key,
			outpost.Identity{Name: "M1", Role: outpost.RoleMaster, Location: "FRA", Code: "01mm"}, ""},
		{"any order, extra space, tabs", "\t key=" + key + "  code=43ax\tfarm=lhr location=LHR role=edge name=EDGE01 addr=h:1  ",
			edgeID, "h:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseLine(tt.line)
			if err != nil {
				t.Fatalf("ParseLine: %v", err)
			}
			if p.Identity != tt.want || p.Addr != tt.addr {
				t.Errorf("got %+v addr %q, want %+v addr %q", p.Identity, p.Addr, tt.want, tt.addr)
			}
		})
	}
}

func TestParseLineErrors(t *testing.T) {
	key := EncodePublicKey(mustGenerate(t).Public())
	good := map[string]string{
		"name": "EDGE01", "role": "edge", "farm": "lhr", "location": "LHR",
		"code": "43ax", "key": key, "addr": "h:7701",
	}
	// line builds a line from good with the given fields replaced (or, for
	// an empty replacement value "!", removed).
	line := func(kv ...string) string {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "!" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		var parts []string
		for _, f := range lineFields {
			if v, ok := m[f]; ok {
				parts = append(parts, f+"="+v)
			}
		}
		return strings.Join(parts, " ")
	}
	if _, err := ParseLine(line()); err != nil {
		t.Fatalf("base line fails: %v", err)
	}

	tests := []struct {
		name string
		line string
		is   error // besides ErrInvalidLine
		want string
	}{
		{"empty", "", nil, "empty line"},
		{"blank", "  \t ", nil, "empty line"},
		{"no equals", line() + " stray", nil, `"stray" is not field=value`},
		{"unknown field", line() + " colour=red", nil, `unknown field "colour"`},
		{"upper field name", strings.Replace(line(), "name=", "NAME=", 1), nil, `unknown field "NAME"`},
		{"empty field name", line() + " =x", nil, `unknown field ""`},
		{"duplicate name", line() + " name=EDGE02", nil, "field name appears twice"},
		{"duplicate key", line() + " key=" + key, nil, "field key appears twice"},
		{"duplicate addr", line() + " addr=h:1", nil, "field addr appears twice"},
		{"empty value", line("farm", ""), nil, "field farm is empty"},
		{"missing name", line("name", "!"), nil, "missing field name"},
		{"missing role", line("role", "!"), nil, "missing field role"},
		{"missing code", line("code", "!"), nil, "missing field code"},
		{"missing key", line("key", "!"), nil, "missing field key"},
		{"missing location", line("location", "!"), nil, "missing field location"},
		{"bad name", line("name", "edge01"), outpost.ErrInvalidIdentity, "name"},
		{"bad location", line("location", "L"), outpost.ErrInvalidIdentity, "location"},
		{"bad role", line("role", "boss"), outpost.ErrInvalidIdentity, "role"},
		{"upper role", line("role", "EDGE"), outpost.ErrInvalidIdentity, "role"},
		{"bad farm", line("farm", "LHR"), outpost.ErrInvalidIdentity, "farm"},
		{"edge farm omitted", line("farm", "!"), outpost.ErrInvalidIdentity, "farm"},
		{"edge farm dash", line("farm", "-"), outpost.ErrInvalidIdentity, "farm"},
		{"bad code", line("code", "4a3x"), outpost.ErrInvalidIdentity, "code"},
		{"key wrong prefix", line("key", "rsa:AAAA"), ErrInvalidKey, "field key"},
		{"key bad base64", line("key", "ed25519:***"), ErrInvalidKey, "field key"},
		{"key wrong length", line("key", "ed25519:AAAA"), ErrInvalidKey, "field key"},
		{"addr no port", line("addr", "host"), nil, "field addr"},
		{"addr no host", line("addr", ":7701"), nil, "field addr"},
		{"addr bad port", line("addr", "host:http"), nil, "field addr"},
		{"addr port zero", line("addr", "host:0"), nil, "field addr"},
		{"addr port too big", line("addr", "host:65536"), nil, "field addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseLine(tt.line)
			if err == nil {
				t.Fatalf("ParseLine(%q) = %+v, want an error", tt.line, p)
			}
			if !errors.Is(err, ErrInvalidLine) {
				t.Errorf("err %v does not wrap ErrInvalidLine", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}
