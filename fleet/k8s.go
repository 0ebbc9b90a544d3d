package fleet

import (
	"fmt"
	"strings"

	"github.com/outpost-edge/outpost"
)

// The Kubernetes layout of the demo fleet (deploy/k8s): one StatefulSet per
// role or farm, each with a headless Service of the same name, all in
// namespace K8sNamespace. A pod's name is its node's name in lower case
// with _ as - (EDGE_LHR_0 runs in pod edge-lhr-0 of StatefulSet edge-lhr),
// which is what `outpost serve --name-from-hostname` reverses.
const (
	K8sNamespace     = "outpost"
	K8sClusterDomain = "cluster.local"
	K8sPeerPort      = 7701
)

// K8sMembers returns the identities of the Kubernetes demo fleet: MASTER_0
// (StatefulSet master), NODE_0 (node), EDGE_LHR_0 and EDGE_LHR_1 (edge-lhr,
// farm lhr), EDGE_CDG_0 and EDGE_CDG_1 (edge-cdg, farm cdg). API and Peer
// are the in-pod listen addresses.
func K8sMembers() []Member {
	ids := []outpost.Identity{
		{Name: "MASTER_0", Location: "FRA", Role: outpost.RoleMaster, Code: "01ma"},
		{Name: "NODE_0", Location: "AMS", Role: outpost.RoleNode, Code: "02no"},
		{Name: "EDGE_LHR_0", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"},
		{Name: "EDGE_LHR_1", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "44bx"},
		{Name: "EDGE_CDG_0", Location: "CDG", Farm: "cdg", Role: outpost.RoleEdge, Code: "51cy"},
		{Name: "EDGE_CDG_1", Location: "CDG", Farm: "cdg", Role: outpost.RoleEdge, Code: "52dz"},
	}
	out := make([]Member, len(ids))
	for i, id := range ids {
		out[i] = Member{Identity: id, API: ":7700", Peer: fmt.Sprintf(":%d", K8sPeerPort)}
	}
	return out
}

// K8sPod is the name of the pod that runs m: edge-lhr-0 for EDGE_LHR_0.
func K8sPod(m Member) string {
	return strings.ReplaceAll(strings.ToLower(m.Name), "_", "-")
}

// K8sStatefulSet is the StatefulSet (and headless Service) of m's pod: the
// pod name without its ordinal, edge-lhr for EDGE_LHR_0.
func K8sStatefulSet(m Member) string {
	pod := K8sPod(m)
	if i := strings.LastIndexByte(pod, '-'); i > 0 {
		return pod[:i]
	}
	return pod
}

// K8sAddr is m's peer address in the cluster, the stable DNS name the
// StatefulSet's headless Service gives its pod:
// edge-lhr-0.edge-lhr.outpost.svc.cluster.local:7701.
func K8sAddr(m Member) string {
	return fmt.Sprintf("%s.%s.%s.svc.%s:%d", K8sPod(m), K8sStatefulSet(m), K8sNamespace, K8sClusterDomain, K8sPeerPort)
}
