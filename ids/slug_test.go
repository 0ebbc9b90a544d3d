package ids_test

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/ids"
)

// slugRE: words of letters, marks and digits joined by single hyphens (no
// upper case: checked separately).
var slugRE = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{M}\p{N}]*(-[\p{L}\p{N}][\p{L}\p{M}\p{N}]*)*$`)

func TestSlugify(t *testing.T) {
	long := strings.Repeat("word ", 30) // 30 words of 4 letters
	oneWord := strings.Repeat("x", 100) // no hyphen to cut at
	tests := []struct {
		name, title, want string
	}{
		{"simple", "Example page", "example-page"},
		{"already a slug", "example-page", "example-page"},
		{"digits kept", "Top 10 of 2024", "top-10-of-2024"},
		{"runs of separators", "  Hello,   World!!  ", "hello-world"},
		{"punctuation", "C++ & Go: a (brief) history?", "c-go-a-brief-history"},
		{"underscores and dots", "snake_case.file.txt", "snake-case-file-txt"},
		{"hyphens collapse", "--a---b--", "a-b"},
		{"apostrophe joins", "Don't stop", "dont-stop"},
		{"curly apostrophe joins", "L’été", "lete"},
		{"french", "Crème brûlée à la façon", "creme-brulee-a-la-facon"},
		{"german", "Größe Übermäßig", "grosse-ubermassig"},
		{"capital sharp s", "GROẞE", "grosse"},
		{"nordic", "Æble Øl Ålborg Þór", "aeble-ol-alborg-thor"},
		{"polish", "Łódź Zażółć", "lodz-zazolc"},
		{"czech", "Příliš žluťoučký kůň", "prilis-zlutoucky-kun"},
		{"turkish", "İstanbul ığdır Şişli", "istanbul-igdir-sisli"},
		{"ligatures", "Œuvre Ĳssel", "oeuvre-ijssel"},
		{"combining accents", "Cafe\u0301 nai\u0308ve", "cafe-naive"},
		{"emoji", "I ❤️ Go 🚀", "i-go"},
		{"emoji between letters", "a🚀b", "a-b"},
		{"multiplication sign breaks", "3×4", "3-4"},
		{"russian", "Привет мир", "privet-mir"},
		{"russian signs and digraphs", "Объявление: Щука и ЖЁЛТЫЙ ёж", "obyavlenie-shchuka-i-zhyoltyy-yozh"},
		{"ukrainian", "Київ Європа ґанок", "kiyiv-yevropa-ganok"},
		{"serbian", "Љубљана Ђорђе", "ljubljana-djordje"},
		{"greek", "Καλημέρα κόσμε", "kalimera-kosme"},
		{"greek capitals and final sigma", "ΨΥΧΉ Θάλασσας", "psychi-thalassas"},
		{"japanese kept", "日本語", "日本語"},
		{"chinese kept, distinct", "世界 你好", "世界-你好"},
		{"korean kept", "안녕하세요 세계", "안녕하세요-세계"},
		{"mixed scripts", "Привет мир hello 世界", "privet-mir-hello-世界"},
		{"cjk punctuation breaks", "東京・大阪。", "東京-大阪"},
		{"thai vowel marks kept", "ภาษาไทย", "ภาษาไทย"},
		{"other case lower-cased", "ԱՐԱՄ", "արամ"},
		{"long cjk cut at a character", strings.Repeat("語", 30), strings.Repeat("語", 20)},
		{"empty", "", "untitled"},
		{"only spaces", "   ", "untitled"},
		{"only symbols", "!@#$%^&*()", "untitled"},
		{"only emoji", "🚀🔥", "untitled"},
		{"long cut at a hyphen", long, strings.TrimSuffix(strings.Repeat("word-", 12), "-")},
		{"long single word cut hard", oneWord, strings.Repeat("x", 60)},
		{"hyphen right at the limit", strings.Repeat("a", 60) + " b", strings.Repeat("a", 60)},
		{"short first word then long one", "ab " + oneWord, "ab-" + strings.Repeat("x", 57)},
		{"long transliterated", strings.Repeat("ß", 40), strings.Repeat("s", 60)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids.Slugify(tt.title); got != tt.want {
				t.Errorf("Slugify(%q) = %q, want %q", tt.title, got, tt.want)
			}
		})
	}
}

// TestSlugify_normalization: a title and its decomposed (NFD) spelling give
// the same slug, because Slugify puts titles in NFC first.
func TestSlugify_normalization(t *testing.T) {
	tests := []struct{ nfc, nfd, want string }{
		{"Йогурт", "И\u0306огурт", "yogurt"},
		{"Ёлка", "Е\u0308лка", "yolka"},
		{"한국어", "\u1112\u1161\u11ab\u1100\u116e\u11a8\u110b\u1165", "한국어"},
		{"Αθήνα", "Αθη\u0301να", "athina"},
		{"Crème", "Cre\u0300me", "creme"},
	}
	for _, tt := range tests {
		got, gotNFD := ids.Slugify(tt.nfc), ids.Slugify(tt.nfd)
		if got != tt.want || gotNFD != tt.want {
			t.Errorf("Slugify(%q) = %q, Slugify(NFD %q) = %q, want %q for both", tt.nfc, got, tt.nfd, gotNFD, tt.want)
		}
	}
}

// TestSlugify_transliterationTable checks that every letter of the Latin-1
// Supplement and Latin Extended-A blocks becomes some ASCII.
func TestSlugify_transliterationTable(t *testing.T) {
	for r := rune(0xC0); r <= 0x17F; r++ {
		if r == '×' || r == '÷' {
			continue
		}
		got := ids.Slugify(string(r))
		if got == "untitled" || !slugRE.MatchString(got) {
			t.Errorf("Slugify(%q U+%04X) = %q, want a transliteration", r, r, got)
		}
	}
}

func FuzzSlugify(f *testing.F) {
	for _, seed := range []string{
		"", "Example page", "Crème brûlée", "Größe", "🚀", "---", "a\u0301", "'", "İı",
		strings.Repeat("ab ", 40), strings.Repeat("x", 200), "\xff\xfe invalid utf8", "Привет мир", "日本語", "ΣΊΣΥΦΟΣ", "ภาษาไทย", "a\u0e34", strings.Repeat("語", 30),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, title string) {
		got := ids.Slugify(title)
		if !slugRE.MatchString(got) || strings.ToLower(got) != got {
			t.Errorf("Slugify(%q) = %q, want lower-case match for %s", title, got, slugRE)
		}
		if len(got) > ids.MaxSlugLen {
			t.Errorf("Slugify(%q) = %q, %d bytes, want at most %d", title, got, len(got), ids.MaxSlugLen)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Slugify(%q) = %q, not valid UTF-8", title, got)
		}
		if again := ids.Slugify(got); again != got {
			t.Errorf("Slugify(Slugify(%q)) = %q, want %q (idempotent)", title, again, got)
		}
	})
}
