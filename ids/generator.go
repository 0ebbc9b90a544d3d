package ids

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"sync"
	"time"

	"github.com/outpost-edge/outpost"
)

// randomSpace is how many values the six random characters of an ID take: 31^6.
const randomSpace = alphabetSize * alphabetSize * alphabetSize * alphabetSize * alphabetSize * alphabetSize

// timeLayout is the DDMMYYHHMMSS creation time at the end of an ID, in UTC.
const timeLayout = "020106150405"

// Generator issues the IDs of one node: NAME-LOC-NNLL-XXXXXXXX-DDMMYYHHMMSS,
// e.g. EDGE01-LHR-43ax-k3m9qz2p-221126142501. It is safe for concurrent use.
//
// Why a node never repeats an ID:
//
//   - The first two of the eight characters encode the boot counter modulo
//     BootCycle (961) through a fixed bijection that scrambles it, so IDs
//     from two runs of the node with different boot counters (mod 961) differ
//     in those characters. The store persists the counter and increments it
//     on every open.
//   - The other six characters are drawn from crypto/rand (31^6 ≈ 887 million
//     values), and within one run the Generator remembers every value it
//     issued in the current second and draws again on a repeat.
//   - The second an ID is stamped with never goes backwards within a run: it
//     is max(now, the last second stamped), so a wall clock stepping back
//     keeps stamping the same second, whose issued values are still
//     remembered, rather than returning to an earlier one.
//
// Hence a node repeats an ID only if 961 boots happen within one second.
// IDs of different nodes differ because node names are unique.
type Generator struct {
	prefix   string // "NAME-LOC-NNLL-"
	boot     [2]byte
	now      func() time.Time
	randRead func([]byte) // fills its argument with random bytes; crypto/rand outside tests

	mu     sync.Mutex
	second int64               // Unix second stamped on the last ID
	issued map[uint32]struct{} // random parts issued within second
	used   bool                // whether any ID has been issued yet
}

// NewGenerator returns a Generator for the node id, whose store has been
// opened boot times (the persisted boot counter after incrementing it on
// this open). now reads the wall clock; nil means time.Now. The identity
// should satisfy outpost.Identity.Validate: the Generator does not check it.
func NewGenerator(id outpost.Identity, boot uint64, now func() time.Time) *Generator {
	if now == nil {
		now = time.Now
	}
	return &Generator{
		prefix:   id.Name + "-" + id.Location + "-" + id.Code + "-",
		boot:     encodeBoot(boot),
		now:      now,
		randRead: func(b []byte) { _, _ = rand.Read(b) }, // crypto/rand.Read never fails
	}
}

// ID returns a new ID, distinct from every ID this Generator has issued and,
// as the Generator doc explains, from every ID issued by any other run of the
// same node with a different boot counter modulo 961.
func (g *Generator) ID() string {
	g.mu.Lock()
	defer g.mu.Unlock()

	sec := g.now().Unix()
	if g.used {
		sec = max(sec, g.second)
	}
	if !g.used || sec != g.second {
		g.second, g.issued, g.used = sec, make(map[uint32]struct{}), true
	}
	r := g.drawRandom()
	for {
		if _, dup := g.issued[r]; !dup {
			break
		}
		r = g.drawRandom()
	}
	g.issued[r] = struct{}{}

	var b strings.Builder
	b.Grow(len(g.prefix) + 8 + 1 + len(timeLayout))
	b.WriteString(g.prefix)
	b.Write(g.boot[:])
	var rnd [6]byte
	for i := len(rnd) - 1; i >= 0; i-- {
		rnd[i] = Alphabet[r%alphabetSize]
		r /= alphabetSize
	}
	b.Write(rnd[:])
	b.WriteByte('-')
	b.WriteString(time.Unix(sec, 0).UTC().Format(timeLayout))
	return b.String()
}

// drawRandom returns a uniformly random value below randomSpace, by
// rejection sampling 30-bit values.
func (g *Generator) drawRandom() uint32 {
	var buf [4]byte
	for {
		g.randRead(buf[:])
		if v := binary.LittleEndian.Uint32(buf[:]) & (1<<30 - 1); v < randomSpace {
			return v
		}
	}
}
