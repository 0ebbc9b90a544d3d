// Package edgecache is the public listener's HTTP cache: entries bounded by
// bytes (LRU), tagged with surrogate keys for purges by key, URL or all
// (hard or soft), a coalescer that makes one origin fetch per key at a time,
// Cache-Control / Surrogate-Control parsing, and a caching reverse proxy in
// front of an origin. Rendered site pages use the same Cache. The design is
// in docs/SITE.md.
package edgecache
