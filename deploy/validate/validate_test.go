package validate

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// k8sDir is deploy/k8s, seen from this package's directory.
const k8sDir = "../k8s"

// The complete kustomizations: the demo fleet and every overlay.
var builds = []string{".", "overlays/ephemeral-edges"}

func TestManifests(t *testing.T) {
	for _, b := range builds {
		t.Run(b, func(t *testing.T) {
			objs, err := Build(filesys.MakeFsOnDisk(), filepath.Join(k8sDir, b))
			if err != nil {
				t.Fatal(err)
			}
			if err := Check(objs); err != nil {
				t.Fatalf("deploy/k8s/%s:\n%s", b, strings.ReplaceAll(err.Error(), "\n", "\n  "))
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.Kind]++
			}
			t.Logf("%d objects: %v", len(objs), kinds)
			want := map[string]int{"Namespace": 1, "Secret": 1, "ConfigMap": 1, "Service": 5, "PodDisruptionBudget": 4, "StatefulSet": 4}
			for k, n := range want {
				if kinds[k] != n {
					t.Errorf("%d %s objects, want %d (all: %v)", kinds[k], k, n, kinds)
				}
			}
		})
	}
}

// TestManifests_BaseHasNoKeys: the base decodes strictly too, and brings no
// Secret or ConfigMap of its own: those come from the kustomization that
// uses it (the demo one in generated/, or a deployment's own).
func TestManifests_BaseHasNoKeys(t *testing.T) {
	objs, err := Build(filesys.MakeFsOnDisk(), filepath.Join(k8sDir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o.Obj.(type) {
		case *corev1.Secret, *corev1.ConfigMap:
			t.Errorf("base contains %s", o)
		}
	}
}

type edit struct{ file, old, new string }

// TestManifests_Broken breaks a copy of deploy/k8s in memory, one way at a
// time, and expects the checks to notice: they must not pass vacuously.
func TestManifests_Broken(t *testing.T) {
	readiness := "          readinessProbe:\n            httpGet: {path: /readyz, port: api}\n            periodSeconds: 5\n            timeoutSeconds: 3\n            failureThreshold: 2\n"
	for _, tt := range []struct {
		name    string
		build   string
		edits   []edit
		wantErr string
	}{
		{"no maxUnavailable", ".", []edit{{"base/edge-cdg.yaml", "      maxUnavailable: 1\n", ""}},
			"StatefulSet edge-cdg: updateStrategy.rollingUpdate.maxUnavailable is not set"},
		{"maxUnavailable 2", ".", []edit{{"base/master.yaml", "maxUnavailable: 1", "maxUnavailable: 2"}},
			"StatefulSet master: updateStrategy.rollingUpdate.maxUnavailable is 2, want 1"},
		{"OnDelete", ".", []edit{{"base/node.yaml", "type: RollingUpdate", "type: OnDelete"}},
			`StatefulSet node: updateStrategy.type is "OnDelete", want RollingUpdate`},
		{"unknown field", ".", []edit{{"base/pod-common.yaml", "readinessProbe:", "readinesProbe:"}},
			`json: unknown field "readinesProbe"`},
		{"no readiness probe", ".", []edit{{"base/pod-common.yaml", readiness, ""}},
			"container outpost readinessProbe: missing"},
		{"readiness on healthz", ".", []edit{{"base/pod-common.yaml", "httpGet: {path: /readyz, port: api}", "httpGet: {path: /healthz, port: api}"}},
			`readinessProbe: path "/healthz", want /readyz`},
		{"shell in scratch", ".", []edit{{"base/pod-common.yaml", "            preStop:\n              sleep: {seconds: 5}\n", "            preStop:\n              exec: {command: [sleep, \"5\"]}\n"}},
			"the image is FROM scratch"},
		{"no preStop", ".", []edit{{"base/pod-common.yaml", "            preStop:\n              sleep: {seconds: 5}\n", "            postStart:\n              sleep: {seconds: 1}\n"}},
			"no lifecycle.preStop hook"},
		{"grace too short", ".", []edit{{"base/pod-common.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 15"}},
			"terminationGracePeriodSeconds must exceed preStop + drain + shutdown = 15s"},
		{"grace too short for the hand-off", "overlays/ephemeral-edges", []edit{{"base/pod-common.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30"}},
			"StatefulSet edge-lhr: terminationGracePeriodSeconds must exceed preStop + drain + shutdown = 35s"},
		{"root", ".", []edit{{"base/pod-common.yaml", "runAsUser: 65532", "runAsUser: 0"}},
			"runAsUser must be 65532"},
		{"writable root", ".", []edit{{"base/pod-common.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"}},
			"readOnlyRootFilesystem must be true"},
		{"PDB selects nothing", ".", []edit{{"base/pdbs.yaml", "matchLabels: {app.kubernetes.io/name: outpost, app.kubernetes.io/instance: node}", "matchLabels: {app.kubernetes.io/name: outpost, app.kubernetes.io/instance: nobody}"}},
			"StatefulSet node: want exactly one PodDisruptionBudget selecting its pods, got 0"},
		{"no PDBs", ".", []edit{{"base/kustomization.yaml", "  - pdbs.yaml\n", ""}},
			"StatefulSet master: want exactly one PodDisruptionBudget selecting its pods, got 0"},
		{"PDB minAvailable", ".", []edit{{"base/pdbs.yaml", "  name: edge-lhr\n  labels: {app.kubernetes.io/name: outpost, app.kubernetes.io/instance: edge-lhr}\nspec:\n  maxUnavailable: 1\n", "  name: edge-lhr\n  labels: {app.kubernetes.io/name: outpost, app.kubernetes.io/instance: edge-lhr}\nspec:\n  minAvailable: 1\n"}},
			"PodDisruptionBudget edge-lhr: want maxUnavailable: 1"},
		{"no trust ConfigMap", ".", []edit{{"generated/kustomization.yaml", "  - fleet.configmap.yaml\n", ""}},
			"no ConfigMap with fleet.trust"},
		{"stale trust list", ".", []edit{{"generated/fleet.configmap.yaml", "addr=edge-cdg-1.edge-cdg.outpost.svc.cluster.local:7701", "addr=edge-cdg-1.edge-cdg:7701"}},
			`EDGE_CDG_1: addr "edge-cdg-1.edge-cdg:7701", want "edge-cdg-1.edge-cdg.outpost.svc.cluster.local:7701"`},
		{"identity Secret not mounted", ".", []edit{{"base/pod-common.yaml", "            - --identity-from=/identities\n", ""}},
			"want --identity-from DIR and --name-from-hostname"},
		{"identity Secret group-readable", ".", []edit{{"base/pod-common.yaml", "defaultMode: 0400", "defaultMode: 0440"}},
			"identity Secret volume: defaultMode must be 0400"},
		{"another farm's key", ".", []edit{{"base/edge-lhr.yaml", "key: EDGE_LHR_1__node.key, path: EDGE_LHR_1/node.key", "key: EDGE_CDG_1__node.key, path: EDGE_LHR_1/node.key"}},
			"projects EDGE_CDG_1__node.key, which belongs to no pod"},
		{"more replicas than identities", ".", []edit{{"base/edge-cdg.yaml", "replicas: 2", "replicas: 3"}},
			"want item EDGE_CDG_2__node.key -> EDGE_CDG_2/node.key"},
		{"master on emptyDir", ".", []edit{
			{"base/master.yaml", "    - metadata:\n        name: data\n", "    - metadata:\n        name: unused\n"},
			{"base/master.yaml", "      volumes:\n", "      volumes:\n        - {name: data, emptyDir: {}}\n"}},
			"StatefulSet master: a master keeps its data on a volumeClaimTemplate, not an emptyDir"},
		{"node without volumeClaimTemplates", ".", []edit{
			{"base/node.yaml", "  volumeClaimTemplates:\n", "  volumeClaimTemplates: []\n  x:\n"},
			{"base/node.yaml", "      volumes:\n", "      volumes:\n        - {name: data, emptyDir: {}}\n"}},
			`json: unknown field "x"`},
		{"not headless", ".", []edit{{"base/services.yaml", "  name: edge-lhr\n  labels: {app.kubernetes.io/name: outpost, app.kubernetes.io/instance: edge-lhr, app.kubernetes.io/component: edge}\nspec:\n  clusterIP: None\n", "  name: edge-lhr\n  labels: {app.kubernetes.io/name: outpost, app.kubernetes.io/instance: edge-lhr, app.kubernetes.io/component: edge}\nspec:\n"}},
			`Service edge-lhr: clusterIP is "", want None`},
		{"unpublished not-ready peers", ".", []edit{{"base/services.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false"}},
			"Service master: publishNotReadyAddresses must be true"},
		{"ephemeral without flag", "overlays/ephemeral-edges", []edit{{"components/ephemeral-edges/kustomization.yaml", "        value: --ephemeral\n", "        value: --log-level=debug\n"}},
			"data on an emptyDir needs --ephemeral"},
		{"extra kind", ".", []edit{{"base/kustomization.yaml", "  - namespace.yaml\n", "  - namespace.yaml\n  - extra.yaml\n"}, {"base/extra.yaml", "", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n"}},
			"unexpected kind apps/v1 Deployment"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fsys := copyToMemory(t, k8sDir)
			for _, e := range tt.edits {
				p := "/k8s/" + e.file
				b, _ := fsys.ReadFile(p) // a new file reads as empty
				if !strings.Contains(string(b), e.old) {
					t.Fatalf("%s no longer contains %q: update this test", e.file, e.old)
				}
				if err := fsys.WriteFile(p, []byte(strings.Replace(string(b), e.old, e.new, 1))); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := Build(fsys, filepath.Join("/k8s", tt.build))
			if err == nil {
				err = Check(objs)
			}
			if err == nil {
				t.Fatalf("the broken manifests passed; want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error does not mention %q:\n%v", tt.wantErr, err)
			}
		})
	}
}

// copyToMemory copies the directory tree dir into /k8s of an in-memory
// file system.
func copyToMemory(t *testing.T, dir string) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.ToSlash(filepath.Join("/k8s", rel)), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}
