package ids_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/outpost-edge/outpost/ids"
)

func TestSlugRegistry_Next(t *testing.T) {
	tests := []struct {
		name   string
		issued []string
		titles []string
		want   []string
	}{
		{
			name:   "first use has no suffix",
			titles: []string{"Example page"},
			want:   []string{"example-page-43ax"},
		},
		{
			name:   "repeats get -2, -3",
			titles: []string{"Example page", "Example page", "example PAGE!", "Other"},
			want:   []string{"example-page-43ax", "example-page-43ax-2", "example-page-43ax-3", "other-43ax"},
		},
		{
			name:   "loaded from the store",
			issued: []string{"example-page-43ax", "example-page-43ax-2"},
			titles: []string{"Example page"},
			want:   []string{"example-page-43ax-3"},
		},
		{
			name:   "fills a gap in what was loaded",
			issued: []string{"example-page-43ax", "example-page-43ax-3"},
			titles: []string{"Example page", "Example page"},
			want:   []string{"example-page-43ax-2", "example-page-43ax-4"},
		},
		{
			name:   "a title that looks suffixed",
			titles: []string{"a", "a", "a 43ax 2"},
			want:   []string{"a-43ax", "a-43ax-2", "a-43ax-2-43ax"},
		},
		{
			name:   "empty titles",
			titles: []string{"", "🚀"},
			want:   []string{"untitled-43ax", "untitled-43ax-2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ids.NewSlugRegistry("43ax", tt.issued)
			for i, title := range tt.titles {
				got := r.Next(title)
				if got != tt.want[i] {
					t.Errorf("Next(%q) #%d = %q, want %q", title, i, got, tt.want[i])
				}
				if !r.Has(got) {
					t.Errorf("Has(%q) = false after Next, want true", got)
				}
			}
		})
	}
}

func TestSlugRegistry_Release(t *testing.T) {
	t.Run("released slug is issued again", func(t *testing.T) {
		r := ids.NewSlugRegistry("43ax", nil)
		s := r.Next("Example page")
		r.Release(s)
		if r.Has(s) {
			t.Errorf("Has(%q) = true after Release, want false", s)
		}
		if got := r.Next("Example page"); got != s {
			t.Errorf("Next() after Release = %q, want %q", got, s)
		}
	})
	t.Run("released suffix is reused first", func(t *testing.T) {
		r := ids.NewSlugRegistry("43ax", nil)
		for range 4 {
			r.Next("x") // x-43ax, x-43ax-2, x-43ax-3, x-43ax-4
		}
		r.Release("x-43ax-2")
		r.Release("x-43ax-3")
		for _, want := range []string{"x-43ax-2", "x-43ax-3", "x-43ax-5"} {
			if got := r.Next("x"); got != want {
				t.Errorf("Next() = %q, want %q", got, want)
			}
		}
	})
	t.Run("releasing unknown slugs does nothing", func(t *testing.T) {
		r := ids.NewSlugRegistry("43ax", []string{"kept-43ax"})
		for _, s := range []string{"", "-", "nope", "x-43ax-2", "x-43ax-0", "x-43ax--1", "kept-43ax-99999999999999999999"} {
			r.Release(s)
		}
		if !r.Has("kept-43ax") {
			t.Error("Has(kept-43ax) = false, want true")
		}
		if got, want := r.Next("kept"), "kept-43ax-2"; got != want {
			t.Errorf("Next(kept) = %q, want %q", got, want)
		}
	})
}

func TestSlugRegistry_Has(t *testing.T) {
	r := ids.NewSlugRegistry("43ax", []string{"loaded-43ax"})
	tests := []struct {
		slug string
		want bool
	}{
		{"loaded-43ax", true},
		{"loaded-43ax-2", false},
		{"loaded-12bc", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.slug, func(t *testing.T) {
			if got := r.Has(tt.slug); got != tt.want {
				t.Errorf("Has(%q) = %v, want %v", tt.slug, got, tt.want)
			}
		})
	}
}

func TestSlugRegistry_concurrent(t *testing.T) {
	r := ids.NewSlugRegistry("43ax", nil)
	const workers, each = 8, 300
	results := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				s := r.Next(fmt.Sprintf("title %d", i%10))
				results[w] = append(results[w], s)
				if i%7 == 0 {
					r.Release(s) // a rolled-back transaction
					results[w] = results[w][:len(results[w])-1]
				}
				r.Has(s)
			}
		})
	}
	wg.Wait()
	seen := make(map[string]bool)
	for _, got := range results {
		for _, s := range got {
			if seen[s] {
				t.Fatalf("slug %q issued twice", s)
			}
			seen[s] = true
			if !r.Has(s) {
				t.Errorf("Has(%q) = false, want true", s)
			}
		}
	}
}

func TestSlugRegistry_nodesNeverCollide(t *testing.T) {
	a, b := ids.NewSlugRegistry("43ax", nil), ids.NewSlugRegistry("12bc", nil)
	seen := make(map[string]string)
	for i := range 200 {
		title := fmt.Sprintf("page %d", i%20)
		for node, r := range map[string]*ids.SlugRegistry{"43ax": a, "12bc": b} {
			s := r.Next(title)
			if other, dup := seen[s]; dup {
				t.Fatalf("slug %q issued by %s and %s", s, other, node)
			}
			seen[s] = node
		}
	}
}
