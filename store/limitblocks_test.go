package store_test

import (
	"context"
	"testing"

	"github.com/outpost-edge/outpost/store"
)

func TestLimitBlocks(t *testing.T) {
	s := openLimitStore(t)
	ctx := context.Background()
	if _, err := s.PutLimitBlock(ctx, "ip:1", 5000); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutLimitBlock(ctx, "ip:2", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutLimitBlock(ctx, "ip:1", 9000); err != nil {
		t.Fatal(err)
	}
	got, err := s.LimitBlocks(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["ip:1"] != 9000 {
		t.Fatalf("blocks %v; want ip:1 until 9000", got)
	}
}

func openLimitStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), openOpts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
