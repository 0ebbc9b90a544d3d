package ids

import "unicode"

// translitGroups lists, for each ASCII replacement, the letters of the
// Latin-1 Supplement (U+00C0-U+00FF) and Latin Extended-A (U+0100-U+017F)
// blocks it stands for, in both cases. The sign × and ÷ are not letters and
// are left out, so Slugify treats them as word breaks.
var translitGroups = map[string]string{
	"a":  "ÀÁÂÃÄÅàáâãäåĀāĂăĄąª",
	"ae": "Ææ",
	"c":  "ÇçĆćĈĉĊċČč",
	"d":  "ÐðĎďĐđ",
	"e":  "ÈÉÊËèéêëĒēĔĕĖėĘęĚě",
	"g":  "ĜĝĞğĠġĢģ",
	"h":  "ĤĥĦħ",
	"i":  "ÌÍÎÏìíîïĨĩĪīĬĭĮįİı",
	"ij": "Ĳĳ",
	"j":  "Ĵĵ",
	"k":  "Ķķĸ",
	"l":  "ĹĺĻļĽľĿŀŁł",
	"n":  "ÑñŃńŅņŇňŉŊŋ",
	"o":  "ÒÓÔÕÖØòóôõöøŌōŎŏŐőº",
	"oe": "Œœ",
	"r":  "ŔŕŖŗŘř",
	"s":  "ŚśŜŝŞşŠšſ",
	"ss": "ßẞ",
	"t":  "ŢţŤťŦŧ",
	"th": "Þþ",
	"u":  "ÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲų",
	"w":  "Ŵŵ",
	"y":  "ÝýÿŶŷŸ",
	"z":  "ŹźŻżŽž",
}

// scriptTranslit romanises the lower-case Cyrillic letters of Russian,
// Ukrainian, Belarusian, Serbian and Macedonian (a simplified BGN/PCGN
// scheme: ж→zh, х→kh, щ→shch, ю→yu) and the Greek letters, with and without
// accents (ELOT 743 simplified: β→v, η→i, θ→th, χ→ch, ψ→ps). The capital
// forms are added from these. The hard and soft signs ъ and ь are dropped
// within a word (see joinsWord).
var scriptTranslit = map[rune]string{
	// Cyrillic.
	'а': "a", 'б': "b", 'в': "v", 'г': "g", 'д': "d", 'е': "e", 'ё': "yo", 'ж': "zh",
	'з': "z", 'и': "i", 'й': "y", 'к': "k", 'л': "l", 'м': "m", 'н': "n", 'о': "o",
	'п': "p", 'р': "r", 'с': "s", 'т': "t", 'у': "u", 'ф': "f", 'х': "kh", 'ц': "ts",
	'ч': "ch", 'ш': "sh", 'щ': "shch", 'ы': "y", 'э': "e", 'ю': "yu", 'я': "ya",
	'є': "ye", 'і': "i", 'ї': "yi", 'ґ': "g", 'ў': "u",
	'ђ': "dj", 'ј': "j", 'љ': "lj", 'њ': "nj", 'ћ': "c", 'џ': "dz", 'ѓ': "gj", 'ќ': "kj", 'ѕ': "dz",
	// Greek.
	'α': "a", 'β': "v", 'γ': "g", 'δ': "d", 'ε': "e", 'ζ': "z", 'η': "i", 'θ': "th",
	'ι': "i", 'κ': "k", 'λ': "l", 'μ': "m", 'ν': "n", 'ξ': "x", 'ο': "o", 'π': "p",
	'ρ': "r", 'σ': "s", 'ς': "s", 'τ': "t", 'υ': "y", 'φ': "f", 'χ': "ch", 'ψ': "ps", 'ω': "o",
	'ά': "a", 'έ': "e", 'ή': "i", 'ί': "i", 'ό': "o", 'ύ': "y", 'ώ': "o",
	'ϊ': "i", 'ϋ': "y", 'ΐ': "i", 'ΰ': "y",
}

// translit maps each letter of translitGroups and scriptTranslit, in both
// cases, to its lower-case ASCII form.
var translit = func() map[rune]string {
	m := make(map[rune]string, 512)
	for ascii, letters := range translitGroups {
		for _, r := range letters {
			m[r] = ascii
		}
	}
	for r, ascii := range scriptTranslit {
		m[r] = ascii
		if up := unicode.ToUpper(r); up != r {
			if _, ok := m[up]; !ok {
				m[up] = ascii
			}
		}
	}
	return m
}()
