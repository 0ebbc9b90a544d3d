package trust

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
)

// mustStore returns a Store for a new file holding lines.
func mustStore(t *testing.T, lines ...string) (*Store, string) {
	t.Helper()
	path := writeList(t, lines...)
	s, err := NewStore(path, selfID, selfKey)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s, path
}

func TestStore_Reload(t *testing.T) {
	master := line(masterID, masterKey, "master.example.com:7701")
	self := line(selfID, selfKey, "")
	edge2 := line(edge2ID, edge2Key, "10.0.0.8:7701")
	tests := []struct {
		name        string
		before      []string
		after       []string
		wantAdded   []string
		wantRemoved []string
		wantChanged []string
	}{
		{"add", []string{master, self}, []string{master, self, edge2},
			[]string{"EDGE02"}, []string{}, []string{}},
		{"add to empty", []string{"# nobody"}, []string{master},
			[]string{"MASTER1"}, []string{}, []string{}},
		{"remove", []string{master, self, edge2}, []string{master, self},
			[]string{}, []string{"EDGE02"}, []string{}},
		{"remove all", []string{master, edge2}, []string{""},
			[]string{}, []string{"MASTER1", "EDGE02"}, []string{}},
		{"key change", []string{master, self, edge2}, []string{master, self, line(edge2ID, spareKey, "10.0.0.8:7701")},
			[]string{"EDGE02"}, []string{"EDGE02"}, []string{}},
		{"addr change", []string{master, self, edge2}, []string{master, self, line(edge2ID, edge2Key, "10.0.0.9:7701")},
			[]string{}, []string{}, []string{"EDGE02"}},
		{"addr dropped", []string{master, self, edge2}, []string{master, self, line(edge2ID, edge2Key, "")},
			[]string{}, []string{}, []string{"EDGE02"}},
		{"role change", []string{master, self}, []string{line(with(masterID, func(id *outpost.Identity) { id.Role = outpost.RoleNode }), masterKey, "master.example.com:7701"), self},
			[]string{}, []string{}, []string{"MASTER1"}},
		{"rename keeps key", []string{master, self, edge2}, []string{master, self, line(with(edge2ID, func(id *outpost.Identity) { id.Name = "EDGE03" }), edge2Key, "10.0.0.8:7701")},
			[]string{}, []string{}, []string{"EDGE03"}},
		{"reorder and comments only", []string{master, self, edge2}, []string{"# reordered", edge2, self, master + " # core"},
			[]string{}, []string{}, []string{}},
		{"add, remove and change at once", []string{master, self, edge2}, []string{line(nodeID, nodeKey, ""), line(masterID, masterKey, "10.1.1.1:7701"), self},
			[]string{"NODE1"}, []string{"EDGE02"}, []string{"MASTER1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := mustStore(t, tt.before...)
			var calls []Diff
			s.OnChange(func(d Diff) { calls = append(calls, d) })
			rewrite(t, path, tt.after...)

			d, err := s.Reload()
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			if got := names(d.Added); !slices.Equal(got, tt.wantAdded) {
				t.Errorf("Added = %v, want %v", got, tt.wantAdded)
			}
			if got := names(d.Removed); !slices.Equal(got, tt.wantRemoved) {
				t.Errorf("Removed = %v, want %v", got, tt.wantRemoved)
			}
			if got := names(d.Changed); !slices.Equal(got, tt.wantChanged) {
				t.Errorf("Changed = %v, want %v", got, tt.wantChanged)
			}

			want, err := Load(path, selfID, selfKey)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := names(s.List().Peers()), names(want.Peers()); !slices.Equal(got, want) {
				t.Errorf("List().Peers() = %v, want %v", got, want)
			}

			wantCalls := 1
			if d.Empty() {
				wantCalls = 0
			}
			if len(calls) != wantCalls {
				t.Fatalf("OnChange callback ran %d times, want %d", len(calls), wantCalls)
			}
			if wantCalls == 1 && calls[0].String() != d.String() {
				t.Errorf("callback got %v, Reload returned %v", calls[0], d)
			}
		})
	}
}

func TestStore_ReloadKeyChange(t *testing.T) {
	s, path := mustStore(t, line(masterID, masterKey, ""), line(edge2ID, edge2Key, ""))
	rewrite(t, path, line(masterID, masterKey, ""), line(edge2ID, spareKey, ""))
	d, err := s.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Removed) != 1 || !d.Removed[0].Key.Equal(edge2Key) {
		t.Errorf("Removed = %+v, want EDGE02 with its old key", d.Removed)
	}
	if len(d.Added) != 1 || !d.Added[0].Key.Equal(spareKey) {
		t.Errorf("Added = %+v, want EDGE02 with its new key", d.Added)
	}
	if _, ok := s.List().ByKey(edge2Key); ok {
		t.Error("old key still trusted after reload")
	}
	if p, ok := s.List().ByKey(spareKey); !ok || p.Name != "EDGE02" {
		t.Errorf("ByKey(new key) = %+v, %v; want EDGE02", p, ok)
	}
}

func TestStore_ReloadBroken(t *testing.T) {
	good := []string{line(masterID, masterKey, ""), line(selfID, selfKey, "")}
	tests := []struct {
		name    string
		break_  func(t *testing.T, path string)
		wantErr error
	}{
		{"invalid line", func(t *testing.T, path string) {
			rewrite(t, path, append(good, "name=EDGE02 oops")...)
		}, ErrInvalid},
		{"duplicate name", func(t *testing.T, path string) {
			rewrite(t, path, append(good, line(masterID, spareKey, ""))...)
		}, ErrInvalid},
		{"self key changed", func(t *testing.T, path string) {
			rewrite(t, path, line(masterID, masterKey, ""), line(selfID, spareKey, ""))
		}, ErrInvalid},
		{"file removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path := mustStore(t, good...)
			before := s.List()
			called := false
			s.OnChange(func(Diff) { called = true })
			tt.break_(t, path)

			d, err := s.Reload()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Reload error = %v, want %v", err, tt.wantErr)
			}
			if !d.Empty() {
				t.Errorf("Reload diff = %v, want empty", d)
			}
			if s.List() != before {
				t.Error("List changed after a failed reload")
			}
			if _, ok := s.List().ByKey(selfKey); !ok {
				t.Error("old list lost its entries")
			}
			if called {
				t.Error("OnChange callback ran after a failed reload")
			}

			// Fixing the file makes the next reload work.
			rewrite(t, path, append(good, line(edge2ID, edge2Key, ""))...)
			d, err = s.Reload()
			if err != nil {
				t.Fatalf("Reload after fix: %v", err)
			}
			if got, want := names(d.Added), []string{"EDGE02"}; !slices.Equal(got, want) {
				t.Errorf("Added = %v, want %v", got, want)
			}
			if !called {
				t.Error("OnChange callback did not run after the fix")
			}
		})
	}
}

func TestStore_OnChange(t *testing.T) {
	s, path := mustStore(t, line(masterID, masterKey, ""))
	var order []string
	s.OnChange(func(d Diff) {
		order = append(order, "first")
		if _, ok := s.List().ByName("EDGE02"); !ok {
			t.Error("callback ran before the new list was in place")
		}
		// A callback may register another one; it runs from the next reload.
		s.OnChange(func(Diff) { order = append(order, "late") })
	})
	s.OnChange(func(Diff) { order = append(order, "second") })

	rewrite(t, path, line(masterID, masterKey, ""), line(edge2ID, edge2Key, ""))
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"first", "second"}; !slices.Equal(order, want) {
		t.Errorf("callbacks ran as %v, want %v", order, want)
	}
}

func TestNewStore_Errors(t *testing.T) {
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		wantErr error
	}{
		{"missing file", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, fs.ErrNotExist},
		{"invalid file", func(t *testing.T) string { return writeList(t, "name=X") }, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStore(tt.path(t), selfID, selfKey)
			if !errors.Is(err, tt.wantErr) || s != nil {
				t.Errorf("NewStore = %v, %v; want nil, %v", s, err, tt.wantErr)
			}
		})
	}
}

func TestStore_ListDuringReload(t *testing.T) {
	a := []string{line(masterID, masterKey, ""), line(selfID, selfKey, ""), line(edge2ID, edge2Key, "")}
	b := []string{line(masterID, masterKey, "10.0.0.1:7701"), line(selfID, selfKey, ""), line(nodeID, nodeKey, "")}
	s, path := mustStore(t, a...)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				l := s.List()
				if l.Len() != 3 {
					t.Errorf("Len = %d, want 3", l.Len())
					return
				}
				if _, ok := l.ByKey(masterKey); !ok {
					t.Error("MASTER1 missing during reload")
					return
				}
				_, edge := l.ByName("EDGE02")
				_, node := l.ByName("NODE1")
				if edge == node {
					t.Errorf("list has EDGE02 %v and NODE1 %v, want exactly one", edge, node)
					return
				}
				_ = l.Others()
			}
		})
	}
	for i := range 200 {
		next := a
		if i%2 == 0 {
			next = b
		}
		rewrite(t, path, next...)
		if _, err := s.Reload(); err != nil {
			t.Errorf("Reload %d: %v", i, err)
			break
		}
	}
	close(stop)
	wg.Wait()
}

func TestDiff_String(t *testing.T) {
	p := func(name string) identity.Peer { return identity.Peer{Identity: outpost.Identity{Name: name}} }
	tests := []struct {
		name string
		d    Diff
		want string
	}{
		{"empty", Diff{}, "no change"},
		{"all", Diff{Added: []identity.Peer{p("A"), p("B")}, Removed: []identity.Peer{p("C")}, Changed: []identity.Peer{p("D")}},
			"added A, B; removed C; changed D"},
		{"changed only", Diff{Changed: []identity.Peer{p("D")}}, "changed D"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.String(); got != tt.want {
				t.Errorf("String = %q, want %q", got, tt.want)
			}
		})
	}
}
