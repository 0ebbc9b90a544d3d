package node

import (
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/trust"
)

// trustDir is the trust list as admission reads it (nil: no peers).
func trustDir(ts *trust.Store) func() admission.Directory {
	return func() admission.Directory {
		if ts == nil {
			return nil
		}
		return ts.List()
	}
}

// holders lists the peers known to hold origin's log through seq (wait_for).
func (n *Node) holders(origin string, seq int64) []api.Holder {
	if n.Repl == nil {
		return nil
	}
	var out []api.Holder
	for _, h := range n.Repl.HoldersOf(origin, seq) {
		out = append(out, api.Holder{Name: h.Name, Role: h.Role})
	}
	return out
}
