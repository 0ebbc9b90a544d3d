package ids

import (
	"strconv"
	"strings"
	"sync"
)

// SlugRegistry is the set of slugs one node has issued, and issues new ones.
// Slugs end in the node's code, so slugs of different nodes never collide;
// the registry makes sure the node itself never issues one twice. It is
// safe for concurrent use.
type SlugRegistry struct {
	code string

	mu     sync.Mutex
	issued map[string]struct{}
	// next maps a base slug ("<title>-<code>") to the smallest suffix that
	// may be free: every base-n with 2 <= n < next[base] is issued.
	next map[string]int
}

// NewSlugRegistry returns a registry for the node with the given code (NNLL,
// e.g. 43ax; not checked) that already holds the slugs in issued, as loaded
// from the store.
func NewSlugRegistry(code string, issued []string) *SlugRegistry {
	r := &SlugRegistry{
		code:   code,
		issued: make(map[string]struct{}, len(issued)),
		next:   make(map[string]int),
	}
	for _, s := range issued {
		r.issued[s] = struct{}{}
	}
	return r
}

// Next issues and records a slug for title: Slugify(title) + "-" + code,
// e.g. example-page-43ax, or, when that was already issued, the same with
// the smallest free suffix -2, -3, ... (example-page-43ax-2).
func (r *SlugRegistry) Next(title string) string {
	base := Slugify(title) + "-" + r.code
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, taken := r.issued[base]; !taken {
		r.issued[base] = struct{}{}
		return base
	}
	n := max(r.next[base], 2)
	slug := base + "-" + strconv.Itoa(n)
	for r.has(slug) {
		n++
		slug = base + "-" + strconv.Itoa(n)
	}
	r.issued[slug] = struct{}{}
	r.next[base] = n + 1
	return slug
}

// Release forgets slug, so it can be issued again: for a slug whose
// transaction rolled back. Releasing a slug never issued does nothing.
func (r *SlugRegistry) Release(slug string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.issued, slug)
	i := strings.LastIndexByte(slug, '-')
	if i < 0 {
		return
	}
	n, err := strconv.Atoi(slug[i+1:])
	if err != nil {
		return
	}
	if h, ok := r.next[slug[:i]]; ok && n >= 2 && n < h {
		r.next[slug[:i]] = n
	}
}

// Has reports whether slug has been issued and not released.
func (r *SlugRegistry) Has(slug string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.has(slug)
}

// has is Has with r.mu held.
func (r *SlugRegistry) has(slug string) bool {
	_, ok := r.issued[slug]
	return ok
}

// Observe records slug as issued, e.g. a row of this node's registry that
// came back from a peer after the node was rebuilt from an empty disk.
func (r *SlugRegistry) Observe(slug string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.issued[slug] = struct{}{}
}
