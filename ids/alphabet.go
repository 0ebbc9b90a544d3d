package ids

// Alphabet is the 31 characters IDs draw their random part from: digits and
// lowercase letters without the easily confused 0, 1, i, l and o.
const Alphabet = "23456789abcdefghjkmnpqrstuvwxyz"

// alphabetSize is len(Alphabet).
const alphabetSize = 31

// BootCycle is how many boot counters the first two random characters of an
// ID tell apart (31*31). Boot counters are taken modulo BootCycle.
const BootCycle = alphabetSize * alphabetSize

// The boot counter modulo BootCycle is scrambled by the bijection
// v = (b*bootMul + bootAdd) mod BootCycle so that consecutive boots do not
// give IDs with visibly consecutive prefixes. bootMul is coprime to 961 = 31²
// (577 = 18*31 + 19), and bootInv is its inverse: 577*483 ≡ 1 (mod 961).
const (
	bootMul = 577
	bootAdd = 123
	bootInv = 483
)

// alphabetIndex maps a byte to its position in Alphabet, or -1.
var alphabetIndex = func() (idx [256]int8) {
	for i := range idx {
		idx[i] = -1
	}
	for i := range len(Alphabet) {
		idx[Alphabet[i]] = int8(i)
	}
	return idx
}()

// encodeBoot returns the two characters that stand for boot mod BootCycle.
func encodeBoot(boot uint64) [2]byte {
	v := (boot%BootCycle*bootMul + bootAdd) % BootCycle
	return [2]byte{Alphabet[v/alphabetSize], Alphabet[v%alphabetSize]}
}

// decodeBoot inverts encodeBoot: it returns boot mod BootCycle, or false when
// a character is not in Alphabet.
func decodeBoot(c0, c1 byte) (int, bool) {
	hi, lo := alphabetIndex[c0], alphabetIndex[c1]
	if hi < 0 || lo < 0 {
		return 0, false
	}
	v := int(hi)*alphabetSize + int(lo)
	return (v - bootAdd + BootCycle) * bootInv % BootCycle, true
}
