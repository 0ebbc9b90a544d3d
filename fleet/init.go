package fleet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-edge/outpost/identity"
)

// Init lays out a fleet for separate processes or containers without
// starting it: a data directory with key and identity per member, the
// shared trust list with each member's peer address addr(m), and the
// schema. Keys already in dir are kept, so running it again only refreshes
// the trust list.
func Init(dir string, members []Member, schema string, addr func(Member) string) error {
	if schema == "" {
		schema = DemoSchema
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "schema.sql"), []byte(schema), 0o644); err != nil {
		return err
	}
	keys := make([]*identity.Key, len(members))
	addrs := make([]string, len(members))
	for i, m := range members {
		d := filepath.Join(dir, m.Name)
		_, k, err := identity.Load(d)
		if errors.Is(err, identity.ErrNoIdentity) {
			if k, err = identity.Generate(); err == nil {
				err = identity.Write(d, m.Identity, k, false)
			}
		}
		if err != nil {
			return fmt.Errorf("fleet init: %s: %w", m.Name, err)
		}
		keys[i], addrs[i] = k, addr(m)
	}
	return writeTrust(filepath.Join(dir, "fleet.trust"), members, keys, addrs)
}

// ContainerAddr is the peer address of a member in the compose and
// Kubernetes layouts: its lower-case name as host, port 7701.
func ContainerAddr(m Member) string { return strings.ToLower(m.Name) + ":7701" }
