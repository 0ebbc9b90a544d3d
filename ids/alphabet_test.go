package ids

import (
	"strings"
	"testing"
)

func TestAlphabet(t *testing.T) {
	if got := len(Alphabet); got != alphabetSize {
		t.Errorf("len(Alphabet) = %d, want %d", got, alphabetSize)
	}
	for _, c := range "01ilo" {
		if strings.ContainsRune(Alphabet, c) {
			t.Errorf("Alphabet contains ambiguous %q", c)
		}
	}
	if bootMul*bootInv%BootCycle != 1 {
		t.Errorf("bootMul*bootInv mod %d = %d, want 1", BootCycle, bootMul*bootInv%BootCycle)
	}
}

func TestEncodeBoot(t *testing.T) {
	t.Run("bijection on one cycle", func(t *testing.T) {
		seen := make(map[[2]byte]uint64, BootCycle)
		for boot := range uint64(BootCycle) {
			enc := encodeBoot(boot)
			if prev, dup := seen[enc]; dup {
				t.Fatalf("encodeBoot(%d) = encodeBoot(%d) = %q", boot, prev, enc[:])
			}
			seen[enc] = boot
			got, ok := decodeBoot(enc[0], enc[1])
			if !ok || got != int(boot) {
				t.Fatalf("decodeBoot(encodeBoot(%d)) = %d, %v, want %d, true", boot, got, ok, boot)
			}
		}
	})
	t.Run("wraps after a cycle", func(t *testing.T) {
		for _, boot := range []uint64{0, 1, 960, 12345, 1<<64 - 1} {
			if got, want := encodeBoot(boot+BootCycle), encodeBoot(boot); boot < 1<<63 && got != want {
				t.Errorf("encodeBoot(%d) = %q, want %q like encodeBoot(%d)", boot+BootCycle, got[:], want[:], boot)
			}
			got, _ := decodeBoot(encodeBoot(boot)[0], encodeBoot(boot)[1])
			if want := int(boot % BootCycle); got != want {
				t.Errorf("decodeBoot(encodeBoot(%d)) = %d, want %d", boot, got, want)
			}
		}
	})
	t.Run("consecutive boots are scrambled", func(t *testing.T) {
		a, b := encodeBoot(1), encodeBoot(2)
		if a[0] == b[0] {
			t.Errorf("encodeBoot(1) = %q and encodeBoot(2) = %q share their first character", a[:], b[:])
		}
	})
}
