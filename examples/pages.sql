-- Demo schema: every node of a fleet loads the same file at start.
-- Rules (checked at start, with an error naming the table and the fix):
--   an explicit PRIMARY KEY NOT NULL (fill it with outpost_id()), no AUTOINCREMENT,
--   no UNIQUE besides the key (use outpost_slug()), NOT NULL columns need a DEFAULT.
CREATE TABLE pages (
	id    TEXT PRIMARY KEY NOT NULL,
	slug  TEXT NOT NULL DEFAULT '',
	title TEXT NOT NULL DEFAULT '',
	body  TEXT
);
CREATE INDEX pages_slug ON pages (slug);
-- Full-text search over title and body, built and kept current by each node
-- on its own (not replicated): SELECT id, snippet(pages_fts, 1, '<b>', '</b>', '…', 12)
-- FROM pages_fts WHERE pages_fts MATCH ? ORDER BY bm25(pages_fts)
-- outpost: search pages_fts on pages (title, body)
