package trust

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
)

var (
	selfID   = outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"}
	masterID = outpost.Identity{Name: "MASTER1", Location: "FRA", Role: outpost.RoleMaster, Code: "01mm"}
	edge2ID  = outpost.Identity{Name: "EDGE02", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "44bx"}
	nodeID   = outpost.Identity{Name: "NODE1", Location: "AMS", Role: outpost.RoleNode, Code: "12ab"}

	selfKey   = testKey(1)
	masterKey = testKey(2)
	edge2Key  = testKey(3)
	nodeKey   = testKey(4)
	spareKey  = testKey(5)
)

// testKey returns a deterministic public key for seed byte i.
func testKey(i byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{i}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
}

// line returns the identity line of id with key and addr.
func line(id outpost.Identity, key ed25519.PublicKey, addr string) string {
	return identity.Line(id, key, addr)
}

// with returns id with its fields changed by f.
func with(id outpost.Identity, f func(*outpost.Identity)) outpost.Identity {
	f(&id)
	return id
}

// writeList writes lines to a new trust list file and returns its path.
func writeList(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trust.list")
	rewrite(t, path, lines...)
	return path
}

// rewrite replaces the file at path with lines.
func rewrite(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// names returns the names of peers.
func names(peers []identity.Peer) []string {
	out := []string{}
	for _, p := range peers {
		out = append(out, p.Name)
	}
	return out
}

func TestList_Load(t *testing.T) {
	tests := []struct {
		name       string
		content    string
		self       outpost.Identity
		selfKey    ed25519.PublicKey
		wantPeers  []string
		wantOthers []string
	}{
		{
			name: "comments, blank lines and self entry",
			content: "# Outpost fleet\n" +
				line(masterID, masterKey, "master.example.com:7701") + "\n" +
				"\n" +
				"   # London farm\n" +
				line(selfID, selfKey, "10.0.0.7:7701") + "  # this node\n" +
				"\t" + line(edge2ID, edge2Key, "") + "\t# behind NAT\n" +
				line(nodeID, nodeKey, "[::1]:7701") + " #\n",
			self: selfID, selfKey: selfKey,
			wantPeers:  []string{"MASTER1", "EDGE01", "EDGE02", "NODE1"},
			wantOthers: []string{"MASTER1", "EDGE02", "NODE1"},
		},
		{
			name:    "without self entry",
			content: line(masterID, masterKey, "") + "\n" + line(edge2ID, edge2Key, "") + "\n",
			self:    selfID, selfKey: selfKey,
			wantPeers:  []string{"MASTER1", "EDGE02"},
			wantOthers: []string{"MASTER1", "EDGE02"},
		},
		{
			name:    "CRLF line endings and byte order mark",
			content: "\uFEFF" + line(masterID, masterKey, "") + "\r\n# x\r\n" + line(selfID, selfKey, "") + "\r\n",
			self:    selfID, selfKey: selfKey,
			wantPeers:  []string{"MASTER1", "EDGE01"},
			wantOthers: []string{"MASTER1"},
		},
		{
			name:    "no trailing newline",
			content: line(masterID, masterKey, ""),
			self:    selfID, selfKey: selfKey,
			wantPeers:  []string{"MASTER1"},
			wantOthers: []string{"MASTER1"},
		},
		{
			name:    "empty file",
			content: "",
			self:    selfID, selfKey: selfKey,
			wantPeers:  []string{},
			wantOthers: []string{},
		},
		{
			name:    "only comments",
			content: "# nobody yet\n\n   \n#" + line(masterID, masterKey, "") + "\n",
			self:    selfID, selfKey: selfKey,
			wantPeers:  []string{},
			wantOthers: []string{},
		},
		{
			name:       "no self: checks against this node skipped",
			content:    line(selfID, spareKey, "") + "\n" + line(masterID, masterKey, "") + "\n",
			wantPeers:  []string{"EDGE01", "MASTER1"},
			wantOthers: []string{"EDGE01", "MASTER1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "trust.list")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := Load(path, tt.self, tt.selfKey)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := names(l.Peers()); !slices.Equal(got, tt.wantPeers) {
				t.Errorf("Peers = %v, want %v", got, tt.wantPeers)
			}
			if got := names(l.Others()); !slices.Equal(got, tt.wantOthers) {
				t.Errorf("Others = %v, want %v", got, tt.wantOthers)
			}
			if got, want := l.Len(), len(tt.wantPeers); got != want {
				t.Errorf("Len = %d, want %d", got, want)
			}
		})
	}
}

func TestList_Lookups(t *testing.T) {
	path := writeList(t,
		line(masterID, masterKey, "master.example.com:7701"),
		line(selfID, selfKey, "10.0.0.7:7701"),
		line(edge2ID, edge2Key, ""),
	)
	l, err := Load(path, selfID, selfKey)
	if err != nil {
		t.Fatal(err)
	}
	want := identity.Peer{Identity: masterID, Key: masterKey, Addr: "master.example.com:7701"}
	tests := []struct {
		name   string
		lookup func() (identity.Peer, bool)
		want   identity.Peer
		wantOK bool
	}{
		{"ByKey known", func() (identity.Peer, bool) { return l.ByKey(masterKey) }, want, true},
		{"ByKey self", func() (identity.Peer, bool) { return l.ByKey(selfKey) }, identity.Peer{Identity: selfID, Key: selfKey, Addr: "10.0.0.7:7701"}, true},
		{"ByKey unknown", func() (identity.Peer, bool) { return l.ByKey(spareKey) }, identity.Peer{}, false},
		{"ByKey nil", func() (identity.Peer, bool) { return l.ByKey(nil) }, identity.Peer{}, false},
		{"ByKey short", func() (identity.Peer, bool) { return l.ByKey(masterKey[:16]) }, identity.Peer{}, false},
		{"ByName known", func() (identity.Peer, bool) { return l.ByName("MASTER1") }, want, true},
		{"ByName edge without addr", func() (identity.Peer, bool) { return l.ByName("EDGE02") }, identity.Peer{Identity: edge2ID, Key: edge2Key}, true},
		{"ByName unknown", func() (identity.Peer, bool) { return l.ByName("EDGE99") }, identity.Peer{}, false},
		{"ByName wrong case", func() (identity.Peer, bool) { return l.ByName("master1") }, identity.Peer{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.lookup()
			if ok != tt.wantOK || got.Identity != tt.want.Identity || !bytes.Equal(got.Key, tt.want.Key) || got.Addr != tt.want.Addr {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestList_Immutable(t *testing.T) {
	l, err := Parse(strings.NewReader(line(masterID, masterKey, "")), selfID, selfKey)
	if err != nil {
		t.Fatal(err)
	}
	peers := l.Peers()
	peers[0].Key[0] ^= 0xff
	peers[0].Name = "X"
	p, _ := l.ByName("MASTER1")
	p.Key[1] ^= 0xff
	o := l.Others()
	o[0].Key[2] ^= 0xff

	got, ok := l.ByKey(masterKey)
	if !ok || got.Name != "MASTER1" || !got.Key.Equal(masterKey) {
		t.Errorf("after changing returned peers, ByKey = %+v, %v; want MASTER1 with its key", got, ok)
	}
}

func TestList_Nil(t *testing.T) {
	var l *List
	if got := l.Len(); got != 0 {
		t.Errorf("Len = %d, want 0", got)
	}
	if _, ok := l.ByKey(masterKey); ok {
		t.Error("ByKey found a peer in a nil list")
	}
	if _, ok := l.ByName("MASTER1"); ok {
		t.Error("ByName found a peer in a nil list")
	}
	if got := l.Peers(); len(got) != 0 {
		t.Errorf("Peers = %v, want none", got)
	}
	if got := l.Others(); len(got) != 0 {
		t.Errorf("Others = %v, want none", got)
	}
}

func TestList_LoadErrors(t *testing.T) {
	master := line(masterID, masterKey, "")
	self := line(selfID, selfKey, "")
	selfLine := func(f func(*outpost.Identity)) string { return line(with(selfID, f), selfKey, "") }
	edge2 := func(f func(*outpost.Identity), key ed25519.PublicKey) string {
		return line(with(edge2ID, f), key, "")
	}
	same := func(*outpost.Identity) {}
	encSelf, encSpare := identity.EncodePublicKey(selfKey), identity.EncodePublicKey(spareKey)

	tests := []struct {
		name     string
		lines    []string
		wantLine int
		wantMsg  string // in the problem's message
		wantIs   error  // also wrapped, besides ErrInvalid; nil to skip
	}{
		{"not field=value", []string{master, "name=EDGE02 role=edge farm=lhr bogus"}, 2,
			`"bogus" is not field=value`, identity.ErrInvalidLine},
		{"unknown field", []string{master, self + " port=7701"}, 2,
			`unknown field "port"`, identity.ErrInvalidLine},
		{"missing key", []string{"name=EDGE02 role=edge farm=lhr location=LHR code=44bx"}, 1,
			"missing field key", identity.ErrInvalidLine},
		{"bad key", []string{master, "", "name=EDGE02 role=edge farm=lhr location=LHR code=44bx key=ed25519:abc"}, 3,
			"field key: invalid key", identity.ErrInvalidKey},
		{"bad addr", []string{edge2(same, edge2Key) + " addr=nohost"}, 1,
			"field addr", identity.ErrInvalidLine},
		{"comment without space", []string{edge2(same, edge2Key) + " addr=h:7701#rack3"}, 1,
			"(a comment needs a space or tab before its #); fix it", identity.ErrInvalidLine},
		{"code not NNLL", []string{master, "# c", edge2(func(id *outpost.Identity) { id.Code = "4ax" }, edge2Key)}, 3,
			`code "4ax" must be NNLL, two digits then two lowercase letters (e.g. 43ax); fix it, or replace the line with what ` + "`outpost id`", outpost.ErrInvalidIdentity},
		{"code upper case", []string{edge2(func(id *outpost.Identity) { id.Code = "44BX" }, edge2Key)}, 1,
			`code "44BX" must be NNLL`, outpost.ErrInvalidIdentity},
		{"edge without farm", []string{master, self, "name=EDGE02 role=edge location=LHR code=44bx key=" + identity.EncodePublicKey(edge2Key)}, 3,
			"edge EDGE02 has no farm; every edge belongs to a farm: add farm=<its farm>", outpost.ErrInvalidIdentity},
		{"edge with farm=-", []string{edge2(func(id *outpost.Identity) { id.Farm = "" }, edge2Key)}, 1,
			"edge EDGE02 has no farm", outpost.ErrInvalidIdentity},
		{"edge without farm and bad name", []string{"name=edge2 role=edge location=LHR code=44bx key=" + identity.EncodePublicKey(edge2Key)}, 1,
			`name "edge2" must be`, outpost.ErrInvalidIdentity},
		{"duplicate name", []string{master, self, line(with(masterID, func(id *outpost.Identity) { id.Code = "02mm" }), spareKey, "")}, 3,
			"MASTER1 is already listed on line 1; each node is listed once: remove one of the two lines", nil},
		{"same node twice", []string{master, self, master}, 3,
			"MASTER1 is already listed on line 1", nil},
		{"duplicate key", []string{master, self, edge2(same, masterKey)}, 3,
			"EDGE02 has the same key as MASTER1 on line 1; each node has its own key", nil},
		{"duplicate code", []string{master, self, edge2(func(id *outpost.Identity) { id.Code = "01mm" }, edge2Key)}, 3,
			"code 01mm of EDGE02 is already the code of MASTER1 on line 1; codes are unique in the trust list", nil},
		{"self key differs", []string{master, line(selfID, spareKey, "")}, 2,
			"the trust list says EDGE01 has key " + encSpare + " but this node's key is " + encSelf + "; update the list with `outpost id` output", nil},
		{"self key under another name", []string{master, self, edge2(same, selfKey)}, 3,
			"EDGE02 has this node's key " + encSelf + ", but this node is EDGE01; a key belongs to one node", nil},
		{"self key under another name before self entry", []string{edge2(same, selfKey), self}, 1,
			"EDGE02 has this node's key", nil},
		{"self role differs", []string{selfLine(func(id *outpost.Identity) { id.Role = outpost.RoleNode })}, 1,
			"the trust list says EDGE01 has role=node but this node's identity has role=edge; update the list with `outpost id` output", nil},
		{"self farm differs", []string{master, selfLine(func(id *outpost.Identity) { id.Farm = "ams" })}, 2,
			"the trust list says EDGE01 has farm=ams but this node's identity has farm=lhr", nil},
		{"self location differs", []string{selfLine(func(id *outpost.Identity) { id.Location = "LGW" })}, 1,
			"the trust list says EDGE01 has location=LGW but this node's identity has location=LHR", nil},
		{"self code differs", []string{selfLine(func(id *outpost.Identity) { id.Code = "99zz" })}, 1,
			"the trust list says EDGE01 has code=99zz but this node's identity has code=43ax", nil},
		{"self role and farm differ", []string{selfLine(func(id *outpost.Identity) { id.Role, id.Farm = outpost.RoleMaster, "" })}, 1,
			"the trust list says EDGE01 has role=master farm=- but this node's identity has role=edge farm=lhr", nil},
		{"line too long", []string{master, strings.Repeat("x", maxLineSize+1)}, 2,
			"line is longer than", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeList(t, tt.lines...)
			l, err := Load(path, selfID, selfKey)
			if err == nil {
				t.Fatalf("Load = %d peers, want an error", l.Len())
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if e.Path != path {
				t.Errorf("Path = %q, want %q", e.Path, path)
			}
			if len(e.Problems) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(e.Problems), err)
			}
			if got := e.Problems[0].Line; got != tt.wantLine {
				t.Errorf("Line = %d, want %d", got, tt.wantLine)
			}
			if got := e.Problems[0].Msg; !strings.Contains(got, tt.wantMsg) {
				t.Errorf("Msg = %q, want it to contain %q", got, tt.wantMsg)
			}
			wantPrefix := fmt.Sprintf("invalid trust list %s: line %d: ", path, tt.wantLine)
			if got := err.Error(); !strings.HasPrefix(got, wantPrefix) {
				t.Errorf("error = %q, want it to start with %q", got, wantPrefix)
			}
		})
	}
}

func TestList_LoadSeveralErrors(t *testing.T) {
	path := writeList(t,
		"# fleet",
		line(masterID, masterKey, ""), // 2 fine
		line(selfID, spareKey, ""),    // 3 self key differs
		"name=EDGE02 role=edge location=LHR code=44bx key="+identity.EncodePublicKey(edge2Key), // 4 no farm
		"",
		line(nodeID, masterKey, ""), // 6 duplicate key
		line(with(nodeID, func(id *outpost.Identity) { id.Name = "NODE2" }), nodeKey, ""), // 7 duplicate code
		"garbage",                     // 8 malformed
		line(masterID, masterKey, ""), // 9 duplicate name
	)
	_, err := Load(path, selfID, selfKey)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Load error = %v, want an *Error", err)
	}
	var gotLines []int
	for _, p := range e.Problems {
		gotLines = append(gotLines, p.Line)
	}
	if want := []int{3, 4, 6, 7, 8, 9}; !slices.Equal(gotLines, want) {
		t.Errorf("problem lines = %v, want %v\n%v", gotLines, want, err)
	}
	msg := err.Error()
	for _, want := range []string{
		"invalid trust list " + path + ": 6 problems:\n",
		"\n\tline 3: the trust list says EDGE01 has key ",
		"\n\tline 4: edge EDGE02 has no farm",
		"\n\tline 6: NODE1 has the same key as MASTER1 on line 2",
		"\n\tline 7: code 12ab of NODE2 is already the code of NODE1 on line 6",
		"\n\tline 8: \"garbage\" is not field=value",
		"\n\tline 9: MASTER1 is already listed on line 2",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	for _, target := range []error{ErrInvalid, identity.ErrInvalidLine, outpost.ErrInvalidIdentity} {
		if !errors.Is(err, target) {
			t.Errorf("error does not wrap %v", target)
		}
	}
}

func TestList_LoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.list"), selfID, selfKey)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error = %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Errorf("error %v wraps ErrInvalid, want a plain read error", err)
	}
}

// failReader fails after returning its data.
type failReader struct{ data []byte }

func (r *failReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestList_ParseReadError(t *testing.T) {
	_, err := Parse(&failReader{data: []byte(line(masterID, masterKey, "") + "\n")}, selfID, selfKey)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("error = %v, want the read error", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Errorf("error %v wraps ErrInvalid, want a plain read error", err)
	}
}

func TestStripComment(t *testing.T) {
	tests := []struct{ in, want string }{
		{"# all", ""},
		{"a=b # c", "a=b "},
		{"a=b\t#c", "a=b\t"},
		{"a=b#c", "a=b#c"},
		{"a=b#c # d", "a=b#c "},
		{"no comment", "no comment"},
	}
	for _, tt := range tests {
		if got := stripComment(tt.in); got != tt.want {
			t.Errorf("stripComment(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
