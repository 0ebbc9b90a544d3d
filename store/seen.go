package store

import (
	"math"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost"
)

// seenCache remembers the (cl, version) of changes this store has committed
// from peers, so the same change arriving again over another path (the
// usual case: a master pulls an edge's write from the edge and from every
// relay) is recognised without reading the clock table.
//
// It is only ever used to skip a change equal to one remembered: the
// clock's (cl, version) for a row and column only grows, so a change equal
// to one committed earlier can never win now. Entries are added only after
// the transaction that applied them committed. Used by the writer only.
type seenCache struct {
	m map[string]seenVersion
}

type seenVersion struct {
	cl     int64
	hlc    uint64
	origin string
}

type seenEntry struct {
	key string
	v   seenVersion
}

const maxSeen = 200_000

func (c *seenCache) has(key string, ch *outpost.Change) bool {
	v, ok := c.m[key]
	return ok && v.cl == ch.CL && v.hlc == ch.HLC && v.origin == ch.Origin
}

func (c *seenCache) add(es []seenEntry) {
	if len(c.m)+len(es) > maxSeen {
		c.m = make(map[string]seenVersion, len(es))
	}
	for _, e := range es {
		c.m[e.key] = e.v
	}
}

// seenKey identifies a change's table, row and column, with typed key values.
func seenKey(ch *outpost.Change) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(ch.Table))
	for _, v := range ch.PK {
		b.WriteByte(0)
		switch x := v.(type) {
		case int64:
			b.WriteByte('i')
			b.WriteString(strconv.FormatInt(x, 10))
		case float64:
			b.WriteByte('f')
			b.WriteString(strconv.FormatUint(math.Float64bits(x), 16))
		case string:
			b.WriteByte('s')
			b.WriteString(x)
		case []byte:
			b.WriteByte('b')
			b.Write(x)
		default:
			b.WriteByte('n')
		}
	}
	b.WriteByte(0)
	b.WriteString(ch.Col)
	return b.String()
}
