package main

import (
	"flag"

	"github.com/outpost-edge/outpost"
)

// identityFlags are the flags that describe a node.
type identityFlags struct {
	name, location, farm, role, code string
}

func (f *identityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.name, "name", "", "node name, unique in the fleet (e.g. EDGE01)")
	fs.StringVar(&f.location, "location", "", "location code (e.g. LHR)")
	fs.StringVar(&f.farm, "farm", "", "farm of an edge (e.g. lhr)")
	fs.StringVar(&f.role, "role", "", "master, node or edge")
	fs.StringVar(&f.code, "code", "", "short code NNLL, unique in the trust list (e.g. 43ax)")
}

func (f *identityFlags) empty() bool {
	return f.name == "" && f.location == "" && f.farm == "" && f.role == "" && f.code == ""
}

// identity returns the validated identity the flags describe.
func (f *identityFlags) identity() (outpost.Identity, error) {
	role, err := outpost.ParseRole(f.role)
	if err != nil {
		return outpost.Identity{}, err
	}
	id := outpost.Identity{Name: f.name, Location: f.location, Farm: f.farm, Role: role, Code: f.code}
	return id, id.Validate()
}
