package ids

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxSlugLen is the longest title part Slugify returns, in bytes.
const MaxSlugLen = 60

// emptySlug is what Slugify returns for a title with nothing to keep.
const emptySlug = "untitled"

// Slugify turns a title into the readable part of a slug: lower-case
// letters and digits, words joined by single hyphens.
//
// Latin letters with diacritics and ligatures are transliterated to ASCII
// (é→e, ß→ss, æ→ae, ø→o, ł→l, þ→th, ...), and so are Cyrillic and Greek
// ("Привет мир" → "privet-mir", "Καλημέρα" → "kalimera"; see
// scriptTranslit). Letters and digits of other scripts (CJK, Arabic,
// Hebrew, Devanagari, ...) are kept as they are, lower-cased where the
// script has case, with the combining marks that follow them ("日本語" →
// "日本語"), so such titles stay distinct and readable; the slug is then
// not ASCII (a URL carries it percent-encoded). The title is first put in
// Unicode Normalization Form C, so the composed and decomposed spellings of
// the same text ("й" as one character or as и + U+0306, Hangul syllables or
// their jamo) give the same slug. Combining accents of the Latin range (U+0300-U+036F),
// apostrophes and the Cyrillic hard and soft signs are dropped within a
// word ("Don't" → "dont"), and every other character (punctuation, symbols,
// emoji, spaces) separates words. The result is at most MaxSlugLen bytes, cut at a hyphen
// when that keeps at least half of them, and never has a leading or trailing
// hyphen. A title with nothing to keep gives "untitled".
func Slugify(title string) string {
	var b strings.Builder
	gap := false // a word break is pending
	for _, r := range norm.NFC.String(title) {
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
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if t := translit[unicode.ToLower(r)]; t != "" {
				word = t
			} else {
				word = string(unicode.ToLower(r))
			}
		case unicode.Is(unicode.M, r) && !gap && b.Len() > 0:
			// A mark (e.g. a Thai vowel, a Devanagari sign) stays with
			// the letter it follows.
			word = string(r)
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
	switch r {
	case 'ъ', 'ь', 'Ъ', 'Ь': // Cyrillic hard and soft signs
		return true
	}
	return '\u0300' <= r && r <= '\u036f'
}

// truncateSlug cuts s, a slug without leading or trailing hyphens, to at
// most MaxSlugLen bytes, at a hyphen when that keeps at least half of them,
// otherwise at the last whole character.
func truncateSlug(s string) string {
	if len(s) <= MaxSlugLen {
		return s
	}
	// A hyphen at s[MaxSlugLen] means s[:MaxSlugLen] ends a word.
	if i := strings.LastIndexByte(s[:MaxSlugLen+1], '-'); i >= MaxSlugLen/2 {
		return s[:i]
	}
	cut := MaxSlugLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut-- // never cut a letter of a non-Latin script in two
	}
	return strings.TrimRight(s[:cut], "-")
}
