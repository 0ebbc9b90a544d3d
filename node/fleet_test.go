package node

import (
	"testing"
	"time"
)

func TestFleetState(t *testing.T) {
	now := time.Now()
	recent, old, never := now.Add(-5*time.Second), now.Add(-UpWithin-time.Second), time.Time{}
	tests := []struct {
		name                         string
		connected, down, standbyOnly bool
		seen                         time.Time
		want                         string
	}{
		{"a connected link", true, false, false, recent, "up"},
		{"connected, another link down", true, true, false, recent, "up"},
		{"no link, pulls from us", false, false, false, recent, "up"},
		{"standby hub that pulls from us", false, false, true, recent, "up"},
		{"link down", false, true, false, never, "down"},
		{"link down, heard from recently", false, true, false, recent, "down"},
		{"standby hub gone quiet", false, false, true, old, "down"},
		{"no link, gone quiet", false, false, false, old, "down"},
		{"standby hub never heard from", false, false, true, never, "standby"},
		{"other farm's edge", false, false, false, never, "unknown"},
	}
	for _, tt := range tests {
		if got := fleetState(tt.connected, tt.down, tt.standbyOnly, tt.seen, now); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}
