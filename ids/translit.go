package ids

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

// translit maps each letter of translitGroups to its lowercase ASCII form.
var translit = func() map[rune]string {
	m := make(map[rune]string, 256)
	for ascii, letters := range translitGroups {
		for _, r := range letters {
			m[r] = ascii
		}
	}
	return m
}()
