package ids

import "strings"

// MaxSlugLen is the longest title part Slugify returns, in bytes.
const MaxSlugLen = 60

// emptySlug is what Slugify returns for a title with nothing to keep.
const emptySlug = "untitled"

// Slugify turns a title into the URL-safe part of a slug: lowercase ASCII
// letters and digits, words joined by single hyphens.
//
// Latin letters with diacritics and ligatures are transliterated (é→e,
// ß→ss, æ→ae, ø→o, ł→l, þ→th, ...), combining accents and apostrophes are
// dropped within a word ("Don't" → "dont"), and every other character
// separates words. The result is at most MaxSlugLen bytes, cut at a hyphen
// when that keeps at least half of them, and never has a leading or trailing
// hyphen. A title with nothing to keep gives "untitled".
func Slugify(title string) string {
	var b strings.Builder
	gap := false // a word break is pending
	for _, r := range title {
		var word string
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			word = string(r)
		case 'A' <= r && r <= 'Z':
			word = string(r + 'a' - 'A')
		case translit[r] != "":
			word = translit[r]
		case joinsWord(r):
			continue
		default:
			gap = true
			continue
		}
		if gap && b.Len() > 0 {
			b.WriteByte('-')
		}
		gap = false
		b.WriteString(word)
		if b.Len() > MaxSlugLen {
			break // the rest cannot reach the result
		}
	}
	s := truncateSlug(b.String())
	if s == "" {
		return emptySlug
	}
	return s
}

// joinsWord reports whether r is dropped without breaking the word it is in:
// apostrophes and combining diacritical marks (U+0300-U+036F).
func joinsWord(r rune) bool {
	switch r {
	case '\'', '\u2019', '\u02bc': // ' ’ ʼ
		return true
	}
	return '\u0300' <= r && r <= '\u036f'
}

// truncateSlug cuts s, a slug without leading or trailing hyphens, to at
// most MaxSlugLen bytes, at a hyphen when that keeps at least half of them.
func truncateSlug(s string) string {
	if len(s) <= MaxSlugLen {
		return s
	}
	// A hyphen at s[MaxSlugLen] means s[:MaxSlugLen] ends a word.
	if i := strings.LastIndexByte(s[:MaxSlugLen+1], '-'); i >= MaxSlugLen/2 {
		return s[:i]
	}
	return strings.TrimRight(s[:MaxSlugLen], "-")
}
