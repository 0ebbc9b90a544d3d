// Package fleet lays out and starts a whole demo fleet in one process: keys,
// identities, a shared trust list and schema in a directory, and one node per
// member. `outpost up` and the multi-node tests use it.
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/outpost-edge/outpost"
	demosite "github.com/outpost-edge/outpost/examples/site"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/node"
)

// DemoSchema is the schema of the demo fleet.
const DemoSchema = `-- Outpost demo schema: pages written anywhere, replicated everywhere.
CREATE TABLE pages (
	id    TEXT PRIMARY KEY NOT NULL,
	slug  TEXT NOT NULL DEFAULT '',
	title TEXT NOT NULL DEFAULT '',
	body  TEXT
);
CREATE INDEX pages_slug ON pages (slug);
-- outpost: search pages_fts on pages (title, body)
CREATE TABLE bench_rows (id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL DEFAULT 0, body TEXT);
`

// Member is one node of a fleet.
type Member struct {
	outpost.Identity
	API  string `json:"api"`  // listen address of the app API
	Peer string `json:"peer"` // listen address of the peer transport
	HTTP string `json:"http"` // listen address of the public listener (with Options.Site)
}

// Demo returns the demo fleet: a master, a node, farm lhr with EDGE01 and
// EDGE02, farm cdg with EDGE03 and EDGE04. With basePort > 0, member i
// listens on basePort+2i (API), basePort+2i+1 (peer) and basePort+2i+1000
// (public HTTP, with Options.Site); with 0, on free ports picked at start.
func Demo(basePort int) []Member {
	ids := []outpost.Identity{
		{Name: "MASTER01", Location: "FRA", Role: outpost.RoleMaster, Code: "01ma"},
		{Name: "NODE01", Location: "AMS", Role: outpost.RoleNode, Code: "02no"},
		{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"},
		{Name: "EDGE02", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "44bx"},
		{Name: "EDGE03", Location: "CDG", Farm: "cdg", Role: outpost.RoleEdge, Code: "51cy"},
		{Name: "EDGE04", Location: "CDG", Farm: "cdg", Role: outpost.RoleEdge, Code: "52dz"},
	}
	out := make([]Member, len(ids))
	for i, id := range ids {
		out[i] = Member{Identity: id, API: "127.0.0.1:0", Peer: "127.0.0.1:0", HTTP: "127.0.0.1:0"}
		if basePort > 0 {
			out[i].API = fmt.Sprintf("127.0.0.1:%d", basePort+2*i)
			out[i].Peer = fmt.Sprintf("127.0.0.1:%d", basePort+2*i+1)
			out[i].HTTP = fmt.Sprintf("127.0.0.1:%d", basePort+2*i+1000)
		}
	}
	return out
}

// Fleet is a running fleet.
type Fleet struct {
	Dir     string
	Members []Member
	Nodes   []*node.Node
	configs []node.Config
}

// Options tune Start.
type Options struct {
	Schema string // DDL; "" = DemoSchema
	Logger *slog.Logger
	// Configure, if set, adjusts each member's node configuration.
	Configure func(m Member, c *node.Config)
	// Site, if set, is a site directory every member serves on its public
	// listener (Member.HTTP); "demo" writes the demo site (examples/site)
	// into the fleet directory and serves that.
	Site string
}

// Start writes keys, identities, the trust list and the schema into dir
// (keeping keys already there, so a fleet can be restarted on its data) and
// opens every node. Nodes start serving at once.
func Start(ctx context.Context, dir string, members []Member, opts Options) (*Fleet, error) {
	if opts.Schema == "" {
		opts.Schema = DemoSchema
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	schemaPath := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schemaPath, []byte(opts.Schema), 0o644); err != nil {
		return nil, err
	}
	keys := make([]*identity.Key, len(members))
	for i, m := range members {
		d := filepath.Join(dir, m.Name)
		_, k, err := identity.Load(d)
		if errors.Is(err, identity.ErrNoIdentity) {
			if k, err = identity.Generate(); err == nil {
				err = identity.Write(d, m.Identity, k, false)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("fleet: %s: %w", m.Name, err)
		}
		keys[i] = k
	}
	trustPath := filepath.Join(dir, "fleet.trust")
	f := &Fleet{Dir: dir, Members: members}
	// Listeners on ":0" learn their ports only when bound, so the trust
	// list is written without addresses first, then with them.
	if err := writeTrust(trustPath, members, keys, nil); err != nil {
		return nil, err
	}
	if opts.Site == "demo" {
		opts.Site = filepath.Join(dir, "site")
		if err := demosite.Write(opts.Site); err != nil {
			return nil, fmt.Errorf("fleet: demo site: %w", err)
		}
	}
	for _, m := range members {
		cfg := node.Config{
			DataDir: filepath.Join(dir, m.Name), SchemaFile: schemaPath, APIAddr: m.API,
			TrustFile: trustPath, PeerAddr: m.Peer, Logger: opts.Logger.With("node", m.Name),
		}
		if opts.Site != "" {
			cfg.HTTPAddr, cfg.SiteDir = m.HTTP, opts.Site
		}
		if opts.Configure != nil {
			opts.Configure(m, &cfg)
		}
		n, err := node.Open(ctx, cfg)
		if err != nil {
			f.Close(ctx)
			return nil, fmt.Errorf("fleet: %w", err)
		}
		f.Nodes = append(f.Nodes, n)
		f.configs = append(f.configs, cfg)
	}
	addrs := make([]string, len(members))
	for i, n := range f.Nodes {
		addrs[i] = n.PeerAddr()
		f.Members[i].API = strings.TrimPrefix(n.APIURL(), "http://")
		f.Members[i].Peer = n.PeerAddr()
		f.Members[i].HTTP = strings.TrimPrefix(n.HTTPURL(), "http://")
	}
	if err := writeTrust(trustPath, members, keys, addrs); err != nil {
		f.Close(ctx)
		return nil, err
	}
	for i := range f.configs {
		// A restart binds the same addresses again.
		f.configs[i].APIAddr, f.configs[i].PeerAddr = f.Members[i].API, f.Members[i].Peer
		if f.configs[i].HTTPAddr != "" {
			f.configs[i].HTTPAddr = f.Members[i].HTTP
		}
	}
	for _, n := range f.Nodes {
		if err := n.ReloadTrust(); err != nil {
			f.Close(ctx)
			return nil, err
		}
		n.Serve()
	}
	return f, nil
}

func writeTrust(path string, members []Member, keys []*identity.Key, addrs []string) error {
	var b strings.Builder
	b.WriteString("# Outpost demo fleet trust list (generated by outpost up)\n")
	for i, m := range members {
		addr := ""
		if addrs != nil {
			addr = addrs[i]
		}
		b.WriteString(identity.Line(m.Identity, keys[i].Public(), addr) + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Restart closes the named node and opens it again on the same data
// directory and addresses, with its configuration adjusted by change (nil =
// unchanged), e.g. a new schema file for a rolling upgrade.
func (f *Fleet) Restart(ctx context.Context, name string, change func(*node.Config)) (*node.Node, error) {
	for i, n := range f.Nodes {
		if n.Identity.Name != name {
			continue
		}
		if err := n.Close(ctx); err != nil {
			return nil, err
		}
		if change != nil {
			change(&f.configs[i])
		}
		nn, err := node.Open(ctx, f.configs[i])
		if err != nil {
			return nil, fmt.Errorf("fleet: restart %s: %w", name, err)
		}
		nn.Serve()
		f.Nodes[i] = nn
		return nn, nil
	}
	return nil, fmt.Errorf("fleet: no node %s", name)
}

// Node returns the running node named name.
func (f *Fleet) Node(name string) *node.Node {
	for _, n := range f.Nodes {
		if n.Identity.Name == name {
			return n
		}
	}
	return nil
}

// Entry is one line of fleet.json.
type Entry struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Farm string `json:"farm"`
	API  string `json:"api"`
	Peer string `json:"peer"`
	HTTP string `json:"http,omitempty"` // public listener (site), when on
}

// Entries describes the running fleet.
func (f *Fleet) Entries() []Entry {
	out := make([]Entry, len(f.Nodes))
	for i, n := range f.Nodes {
		out[i] = Entry{Name: n.Identity.Name, Role: string(n.Identity.Role), Farm: n.Identity.Farm, API: n.APIURL(), Peer: n.PeerAddr(), HTTP: n.HTTPURL()}
	}
	return out
}

// WriteJSON writes fleet.json into the fleet's directory.
func (f *Fleet) WriteJSON() error {
	b, err := json.MarshalIndent(f.Entries(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(f.Dir, "fleet.json"), append(b, '\n'), 0o644)
}

// Close stops every node.
func (f *Fleet) Close(ctx context.Context) error {
	var errs []error
	for _, n := range f.Nodes {
		if err := n.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
