package ids_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/ids"
	"pgregory.net/rapid"
)

func TestParseID(t *testing.T) {
	t.Run("example", func(t *testing.T) {
		got, err := ids.ParseID("EDGE01-LHR-43ax-k3m9qz2p-221126142501")
		if err != nil {
			t.Fatal(err)
		}
		want := ids.IDParts{
			Name: "EDGE01", Location: "LHR", Code: "43ax", Random: "k3m9qz2p",
			Boot: got.Boot, // checked by the round trip below
			Time: time.Date(2026, 11, 22, 14, 25, 1, 0, time.UTC),
		}
		if got != want {
			t.Errorf("ParseID() = %+v, want %+v", got, want)
		}
	})

	valid := "EDGE01-LHR-43ax-k3m9qz2p-221126142501"
	tests := []struct {
		name, id, wantInErr string
	}{
		{"empty", "", "parts"},
		{"too few parts", "EDGE01-LHR-43ax-221126142501", "parts"},
		{"too many parts", "EDGE-01-LHR-43ax-k3m9qz2p-221126142501", "parts"},
		{"lowercase name", "edge01-LHR-43ax-k3m9qz2p-221126142501", "name"},
		{"empty name", "-LHR-43ax-k3m9qz2p-221126142501", "name"},
		{"name too long", strings.Repeat("A", 33) + "-LHR-43ax-k3m9qz2p-221126142501", "name"},
		{"short location", "EDGE01-L-43ax-k3m9qz2p-221126142501", "location"},
		{"lowercase location", "EDGE01-lhr-43ax-k3m9qz2p-221126142501", "location"},
		{"code letters first", "EDGE01-LHR-ax43-k3m9qz2p-221126142501", "code"},
		{"uppercase code", "EDGE01-LHR-43AX-k3m9qz2p-221126142501", "code"},
		{"random too short", "EDGE01-LHR-43ax-k3m9qz2-221126142501", "random"},
		{"random too long", "EDGE01-LHR-43ax-k3m9qz2pp-221126142501", "random"},
		{"ambiguous 0 in random", "EDGE01-LHR-43ax-k3m0qz2p-221126142501", "random"},
		{"ambiguous l in random", "EDGE01-LHR-43ax-k3mlqz2p-221126142501", "random"},
		{"uppercase random", "EDGE01-LHR-43ax-K3M9QZ2P-221126142501", "random"},
		{"time too short", "EDGE01-LHR-43ax-k3m9qz2p-2211261425", "time"},
		{"time not digits", "EDGE01-LHR-43ax-k3m9qz2p-22112614250x", "time"},
		{"month 13", "EDGE01-LHR-43ax-k3m9qz2p-221326142501", "time"},
		{"30 February", "EDGE01-LHR-43ax-k3m9qz2p-300226142501", "time"},
		{"hour 24", "EDGE01-LHR-43ax-k3m9qz2p-221126242501", "time"},
		{"trailing space", valid + " ", "time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ids.ParseID(tt.id)
			if !errors.Is(err, ids.ErrInvalidID) {
				t.Fatalf("ParseID(%q) = %v, want ErrInvalidID", tt.id, err)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("ParseID(%q) = %q, want it to mention %q", tt.id, err, tt.wantInErr)
			}
		})
	}
}

func TestIDParts_String(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		id := outpost.Identity{
			Name:     rapid.StringMatching(`[A-Z0-9][A-Z0-9_]{0,31}`).Draw(t, "name"),
			Location: rapid.StringMatching(`[A-Z0-9]{2,8}`).Draw(t, "location"),
			Code:     rapid.StringMatching(`[0-9]{2}[a-z]{2}`).Draw(t, "code"),
			Role:     outpost.RoleNode,
		}
		boot := rapid.Uint64().Draw(t, "boot")
		// Two-digit years cover 1969-2068.
		at := time.Unix(rapid.Int64Range(0, 3_000_000_000).Draw(t, "unix"), 0)
		s := ids.NewGenerator(id, boot, frozenAt(at)).ID()

		got, err := ids.ParseID(s)
		if err != nil {
			t.Fatalf("ParseID(%q) = %v", s, err)
		}
		if got.String() != s {
			t.Fatalf("ParseID(%q).String() = %q", s, got.String())
		}
		if got.Name != id.Name || got.Location != id.Location || got.Code != id.Code {
			t.Fatalf("ParseID(%q) = %+v, want identity %+v", s, got, id)
		}
		if want := int(boot % ids.BootCycle); got.Boot != want {
			t.Fatalf("ParseID(%q).Boot = %d, want %d", s, got.Boot, want)
		}
		if !got.Time.Equal(at) || got.Time.Location() != time.UTC {
			t.Fatalf("ParseID(%q).Time = %v, want %v in UTC", s, got.Time, at.UTC())
		}
	})
}
