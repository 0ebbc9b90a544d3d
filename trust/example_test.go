package trust_test

import (
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/trust"
)

func ExampleParse() {
	const list = `# Outpost fleet trust list, the same file on every node.
name=MASTER1 role=master farm=- location=FRA code=01mm key=ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w addr=master1.example.com:7701

# London farm
name=EDGE01 role=edge farm=lhr location=LHR code=43ax key=ed25519:gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q addr=10.0.0.7:7701  # rack 3
name=EDGE02 role=edge farm=lhr location=LHR code=44bx key=ed25519:7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E
`
	self := outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"}
	selfKey, _ := identity.DecodePublicKey("ed25519:gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q")

	l, err := trust.Parse(strings.NewReader(list), self, selfKey)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range l.Others() {
		fmt.Printf("%s %s %q\n", p.Name, p.Role, p.Addr)
	}

	// The same list on EDGE02's machine, where EDGE01's entry must not carry
	// EDGE02's key.
	edge2 := outpost.Identity{Name: "EDGE02", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "44bx"}
	_, err = trust.Parse(strings.NewReader(list), edge2, selfKey)
	fmt.Println(err)
	// Output:
	// MASTER1 master "master1.example.com:7701"
	// EDGE02 edge ""
	// invalid trust list: 2 problems:
	// 	line 5: EDGE01 has this node's key ed25519:gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q, but this node is EDGE02; a key belongs to one node: remove the line, or if it is meant to be this node, replace the line with what `outpost id` prints on that node
	// 	line 6: the trust list says EDGE02 has key ed25519:7UkoxijRwsbq6QM4kFmVYSlZJzpcY_k2NsFGFKyHN9E but this node's key is ed25519:gTl3Dqh9F19Wo1Rmw0x-zMuNipG07jeiXfYPW4_Js5Q; update the list with `outpost id` output
}
