// Package validate checks the Kubernetes manifests in deploy/k8s offline:
// it builds them with kustomize (in process, no kubectl, no cluster),
// decodes every object strictly into its k8s.io/api type, refusing unknown
// fields, and checks what Outpost needs of them (rolling updates one pod at
// a time, readiness on /readyz, a drain-friendly shutdown, non-root, a
// disruption budget per StatefulSet, identities from the Secret, the trust
// list from the ConfigMap, persistent data for masters and nodes, ...).
//
// It is its own Go module so the main module does not depend on the
// Kubernetes libraries. Run it with `go test ./...` in this directory.
package validate

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// What the manifests must agree on with the code (fleet/k8s.go, cmd/outpost).
const (
	Namespace     = "outpost"
	ClusterDomain = "cluster.local"
	APIPort       = 7700
	PeerPort      = 7701
	RunAsUser     = 65532
	SecretMode    = 0o400
	// The defaults of outpost serve --drain-timeout and --shutdown-timeout.
	defaultDrain    = 20 * time.Second
	defaultShutdown = 10 * time.Second
)

// Object is one object of the kustomize output, strictly decoded.
type Object struct {
	APIVersion, Kind, Name, Namespace string
	Obj                               any // *appsv1.StatefulSet, *corev1.Service, ...
}

func (o Object) String() string { return o.Kind + " " + o.Name }

// Build runs kustomize on dir (of fsys) and strictly decodes its output.
func Build(fsys filesys.FileSystem, dir string) ([]Object, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []Object
	var errs []error
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err))
			continue
		}
		o := Object{APIVersion: r.GetApiVersion(), Kind: r.GetKind(), Name: r.GetName(), Namespace: r.GetNamespace()}
		if o.Obj, err = Decode(o.APIVersion, o.Kind, y); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o, err))
			continue
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// Decode strictly decodes one object of a kind this deployment uses:
// unknown or duplicate fields are errors, as are kinds outside the list.
func Decode(apiVersion, kind string, y []byte) (any, error) {
	var obj any
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Secret":
		obj = &corev1.Secret{}
	case "apps/v1 StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("unexpected kind %s %s (add it to Decode if it is meant to be there)", apiVersion, kind)
	}
	if err := yaml.UnmarshalStrict(y, obj); err != nil {
		return nil, fmt.Errorf("strict decode as %s %s: %w", apiVersion, kind, err)
	}
	return obj, nil
}

// fleet is the decoded output by kind.
type fleet struct {
	namespaces   []*corev1.Namespace
	services     []*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	statefulSets []*appsv1.StatefulSet
	pdbs         []*policyv1.PodDisruptionBudget
}

// checker collects problems, each naming its object.
type checker struct{ errs []error }

func (c *checker) errorf(obj, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", obj, fmt.Sprintf(format, args...)))
}

// Check returns every problem found in objs, or nil.
func Check(objs []Object) error {
	c := &checker{}
	f := fleet{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, o := range objs {
		c.checkMeta(o)
		switch v := o.Obj.(type) {
		case *corev1.Namespace:
			f.namespaces = append(f.namespaces, v)
		case *corev1.Service:
			f.services = append(f.services, v)
		case *corev1.ConfigMap:
			f.configMaps[v.Name] = v
		case *corev1.Secret:
			f.secrets[v.Name] = v
		case *appsv1.StatefulSet:
			f.statefulSets = append(f.statefulSets, v)
		case *policyv1.PodDisruptionBudget:
			f.pdbs = append(f.pdbs, v)
		}
	}
	c.checkNamespace(f)
	if len(f.statefulSets) == 0 {
		c.errorf("kustomization", "no StatefulSet")
	}
	for _, sts := range f.statefulSets {
		c.checkStatefulSet(f, sts)
	}
	c.checkPDBs(f)
	c.checkAPIService(f)
	c.checkTrust(f)
	return errors.Join(c.errs...)
}

func (c *checker) checkMeta(o Object) {
	for _, msg := range validation.IsDNS1123Subdomain(o.Name) {
		c.errorf(o.String(), "name: %s", msg)
	}
	if o.Kind == "Service" {
		for _, msg := range validation.IsDNS1035Label(o.Name) {
			c.errorf(o.String(), "name: %s", msg)
		}
	}
	if o.Kind == "Namespace" {
		if o.Namespace != "" {
			c.errorf(o.String(), "a Namespace has no namespace, got %q", o.Namespace)
		}
	} else if o.Namespace != Namespace {
		c.errorf(o.String(), "namespace %q, want %q", o.Namespace, Namespace)
	}
	if m, ok := o.Obj.(metav1.Object); ok {
		c.checkLabels(o.String()+" metadata", m.GetLabels())
	}
}

func (c *checker) checkLabels(where string, l map[string]string) {
	for k, v := range l {
		for _, msg := range validation.IsQualifiedName(k) {
			c.errorf(where, "label key %q: %s", k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			c.errorf(where, "label %s value %q: %s", k, v, msg)
		}
	}
}

func (c *checker) checkNamespace(f fleet) {
	if len(f.namespaces) != 1 || f.namespaces[0].Name != Namespace {
		c.errorf("Namespace", "want exactly one Namespace %q, got %d", Namespace, len(f.namespaces))
		return
	}
	if got := f.namespaces[0].Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		c.errorf("Namespace "+Namespace, "label pod-security.kubernetes.io/enforce is %q, want restricted", got)
	}
}

// nodeName is the Outpost node name of a pod, as --name-from-hostname
// derives it: edge-lhr-0 is EDGE_LHR_0.
func nodeName(pod string) string { return strings.ToUpper(strings.ReplaceAll(pod, "-", "_")) }

// peerAddr is the address fleet.trust must give the pod.
func peerAddr(pod, svc string) string {
	return fmt.Sprintf("%s.%s.%s.svc.%s:%d", pod, svc, Namespace, ClusterDomain, PeerPort)
}

// checkStatefulSet checks one StatefulSet and its pod template.
func (c *checker) checkStatefulSet(f fleet, sts *appsv1.StatefulSet) {
	where := "StatefulSet " + sts.Name
	spec := sts.Spec
	pod := spec.Template.Spec
	tmplLabels := labels.Set(spec.Template.Labels)
	c.checkLabels(where+" pod template", spec.Template.Labels)

	component := tmplLabels["app.kubernetes.io/component"]
	switch component {
	case "master", "node":
		if sts.Name != component {
			c.errorf(where, "a %s StatefulSet must be named %q (its pods' names are the node names)", component, component)
		}
	case "edge":
		farm := tmplLabels["outpost.dev/farm"]
		if farm == "" || sts.Name != "edge-"+farm {
			c.errorf(where, "an edge StatefulSet must be named edge-<farm> with label outpost.dev/farm=<farm>, got farm %q", farm)
		}
	default:
		c.errorf(where, "pod label app.kubernetes.io/component is %q, want master, node or edge", component)
	}

	// Selector, replicas, rolling updates.
	if spec.Selector == nil {
		c.errorf(where, "no selector")
	} else if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); err != nil || sel.Empty() || !sel.Matches(tmplLabels) {
		c.errorf(where, "selector %v does not select its own pod template (labels %v): %v", spec.Selector, spec.Template.Labels, err)
	}
	replicas := int32(1)
	if spec.Replicas != nil {
		replicas = *spec.Replicas
	}
	if replicas < 1 {
		c.errorf(where, "replicas %d", replicas)
	}
	if spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		c.errorf(where, "updateStrategy.type is %q, want RollingUpdate", spec.UpdateStrategy.Type)
	}
	if ru := spec.UpdateStrategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil {
		c.errorf(where, "updateStrategy.rollingUpdate.maxUnavailable is not set, want 1")
	} else if *ru.MaxUnavailable != intstr.FromInt32(1) {
		c.errorf(where, "updateStrategy.rollingUpdate.maxUnavailable is %s, want 1", ru.MaxUnavailable.String())
	}
	if spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		c.errorf(where, "podManagementPolicy is %q, want Parallel (readiness waits for peers, so pods must not wait for each other)", spec.PodManagementPolicy)
	}

	// The headless Service that gives pods their DNS names.
	var svc *corev1.Service
	for _, s := range f.services {
		if s.Name == spec.ServiceName {
			svc = s
		}
	}
	switch {
	case spec.ServiceName == "":
		c.errorf(where, "no serviceName")
	case svc == nil:
		c.errorf(where, "serviceName %q: no such Service", spec.ServiceName)
	default:
		sw := "Service " + svc.Name
		if svc.Name != sts.Name {
			c.errorf(where, "serviceName %q: the trust list addresses assume the headless Service is named like the StatefulSet", svc.Name)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			c.errorf(sw, "clusterIP is %q, want None (headless, for per-pod DNS names)", svc.Spec.ClusterIP)
		}
		if !svc.Spec.PublishNotReadyAddresses {
			c.errorf(sw, "publishNotReadyAddresses must be true: peers must reach each other before they are ready")
		}
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(tmplLabels) {
			c.errorf(sw, "selector %v does not select StatefulSet %s's pods", svc.Spec.Selector, sts.Name)
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == PeerPort }) {
			c.errorf(sw, "no port %d (peer transport)", PeerPort)
		}
	}

	// Pod-level settings.
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		c.errorf(where, "enableServiceLinks must be false (Service variables next to OUTPOST_* ones)")
	}
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if len(pod.Containers) != 1 {
		c.errorf(where, "want exactly one container, got %d", len(pod.Containers))
		return
	}
	ctr := pod.Containers[0]
	cw := where + " container " + ctr.Name
	csc := ctr.SecurityContext
	if csc == nil {
		csc = &corev1.SecurityContext{}
	}
	if !truthy(csc.RunAsNonRoot, psc.RunAsNonRoot) {
		c.errorf(cw, "runAsNonRoot is not true")
	}
	if u := first(csc.RunAsUser, psc.RunAsUser); u == nil || *u != RunAsUser {
		c.errorf(cw, "runAsUser must be %d", RunAsUser)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		c.errorf(cw, "readOnlyRootFilesystem must be true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		c.errorf(cw, "allowPrivilegeEscalation must be false")
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		c.errorf(cw, "capabilities must drop ALL")
	}
	if sp := first(csc.SeccompProfile, psc.SeccompProfile); sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.errorf(cw, "seccompProfile must be RuntimeDefault")
	}
	if ctr.Image == "" {
		c.errorf(cw, "no image")
	}
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["api"] != APIPort || ports["peer"] != PeerPort {
		c.errorf(cw, "want ports api=%d and peer=%d, got %v", APIPort, PeerPort, ports)
	}
	if len(ctr.Command) == 0 || ctr.Command[0] != "/outpost" {
		c.errorf(cw, "command must be /outpost, got %q", ctr.Command)
	}
	args := parseArgs(ctr.Args)
	if len(ctr.Args) == 0 || ctr.Args[0] != "serve" {
		c.errorf(cw, "args must start with serve, got %q", ctr.Args)
	}
	if args["api"] != fmt.Sprintf(":%d", APIPort) && args["api"] != fmt.Sprintf("0.0.0.0:%d", APIPort) {
		c.errorf(cw, "--api must listen on all interfaces, port %d (probes and Services reach the pod IP); got %q", APIPort, args["api"])
	}
	if args["peer-addr"] != fmt.Sprintf(":%d", PeerPort) && args["peer-addr"] != fmt.Sprintf("0.0.0.0:%d", PeerPort) {
		c.errorf(cw, "--peer-addr must be :%d, got %q", PeerPort, args["peer-addr"])
	}

	// Probes and shutdown.
	c.checkProbe(cw+" readinessProbe", ctr.ReadinessProbe, "/readyz", args)
	c.checkProbe(cw+" livenessProbe", ctr.LivenessProbe, "/healthz", args)
	var preStop time.Duration
	switch h := lifecycleHandler(ctr.Lifecycle); {
	case h == nil:
		c.errorf(cw, "no lifecycle.preStop hook")
	case h.Sleep != nil:
		preStop = time.Duration(h.Sleep.Seconds) * time.Second
	case h.Exec != nil:
		c.checkExec(cw+" preStop", h.Exec)
		preStop = 3 * time.Second // outpost probe's default --timeout
	case h.HTTPGet != nil:
		preStop = 3 * time.Second
	default:
		c.errorf(cw, "lifecycle.preStop has no action")
	}
	ephemeral := args["ephemeral"] == "true"
	bound := preStop + durationArg(c, cw, args, "shutdown-timeout", defaultShutdown)
	if ephemeral {
		bound += durationArg(c, cw, args, "drain-timeout", defaultDrain)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= bound {
		c.errorf(where, "terminationGracePeriodSeconds must exceed preStop + drain + shutdown = %s", bound)
	}

	// Volumes.
	mounts := map[string]corev1.VolumeMount{} // by mount path
	for _, m := range ctr.VolumeMounts {
		mounts[m.MountPath] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		if _, dup := vols[v.Name]; dup {
			c.errorf(where, "volume %q twice", v.Name)
		}
		vols[v.Name] = v
	}
	vcts := map[string]corev1.PersistentVolumeClaim{}
	for _, v := range spec.VolumeClaimTemplates {
		vcts[v.Name] = v
		if _, dup := vols[v.Name]; dup {
			c.errorf(where, "volume %q is also a volumeClaimTemplate (the claim would silently win)", v.Name)
		}
	}
	for _, m := range ctr.VolumeMounts {
		_, isVol := vols[m.Name]
		_, isVCT := vcts[m.Name]
		if !isVol && !isVCT {
			c.errorf(cw, "mount %s: no volume or volumeClaimTemplate %q", m.MountPath, m.Name)
		}
	}
	if m, ok := mounts["/tmp"]; !ok || vols[m.Name].EmptyDir == nil {
		c.errorf(cw, "no emptyDir on /tmp (the root filesystem is read-only)")
	}

	// The data directory: persistent, or an emptyDir with --ephemeral.
	if m, ok := mountOf(mounts, args["data"]); !ok || args["data"] == "" {
		c.errorf(cw, "--data %q is not on a mounted volume", args["data"])
	} else if vct, isVCT := vcts[m.Name]; isVCT {
		if !slices.Contains(vct.Spec.AccessModes, corev1.ReadWriteOnce) && !slices.Contains(vct.Spec.AccessModes, corev1.ReadWriteOncePod) {
			c.errorf(where, "volumeClaimTemplate %s: want accessMode ReadWriteOnce(Pod), got %v", vct.Name, vct.Spec.AccessModes)
		}
		if q, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.IsZero() {
			c.errorf(where, "volumeClaimTemplate %s: no storage request", vct.Name)
		}
		if ephemeral {
			c.errorf(cw, "--ephemeral with a persistent data volume: the drain would wait for a hand-off it does not need")
		}
	} else if vols[m.Name].EmptyDir != nil {
		if component != "edge" {
			c.errorf(where, "a %s keeps its data on a volumeClaimTemplate, not an emptyDir", component)
		} else if !ephemeral {
			c.errorf(cw, "data on an emptyDir needs --ephemeral, so a draining edge hands its writes to a farm sibling")
		}
	} else {
		c.errorf(where, "--data %s: volume %q is neither a volumeClaimTemplate nor an emptyDir", args["data"], m.Name)
	}
	if component == "master" || component == "node" {
		if len(spec.VolumeClaimTemplates) == 0 {
			c.errorf(where, "a %s needs volumeClaimTemplates (persistent data)", component)
		}
	}

	// The trust list and schema from the ConfigMap.
	if args["trust"] == "" {
		c.errorf(cw, "no --trust")
	} else {
		c.configMapFile(cw, f, mounts, vols, args["trust"], "--trust")
	}
	if args["schema"] != "" {
		c.configMapFile(cw, f, mounts, vols, args["schema"], "--schema")
	}

	// Identities from the Secret: this StatefulSet's pods' and no others.
	var names []string
	for i := range replicas {
		names = append(names, nodeName(fmt.Sprintf("%s-%d", sts.Name, i)))
	}
	if args["identity-from"] == "" || args["name-from-hostname"] != "true" {
		c.errorf(cw, "want --identity-from DIR and --name-from-hostname (identities from the Secret)")
	} else if m, ok := mounts[path.Clean(args["identity-from"])]; !ok {
		c.errorf(cw, "--identity-from %s is not a mount point", args["identity-from"])
	} else if sv := vols[m.Name].Secret; sv == nil {
		c.errorf(cw, "--identity-from %s: volume %q is not a Secret", m.MountPath, m.Name)
	} else {
		c.checkIdentities(cw, f, m, sv, names)
	}
}

// checkIdentities checks that the Secret volume projects exactly the
// identity files of names, as NAME/identity.json and NAME/node.key, 0400.
func (c *checker) checkIdentities(where string, f fleet, m corev1.VolumeMount, sv *corev1.SecretVolumeSource, names []string) {
	if !m.ReadOnly {
		c.errorf(where, "identity mount %s must be readOnly", m.MountPath)
	}
	if sv.DefaultMode == nil || *sv.DefaultMode != SecretMode {
		c.errorf(where, "identity Secret volume: defaultMode must be 0400")
	}
	if sv.Optional != nil && *sv.Optional {
		c.errorf(where, "identity Secret volume must not be optional")
	}
	secret := f.secrets[sv.SecretName]
	if secret == nil {
		c.errorf(where, "identity Secret %q is not in the kustomization", sv.SecretName)
	}
	want := map[string]string{} // key -> path
	for _, n := range names {
		want[n+"__identity.json"] = n + "/identity.json"
		want[n+"__node.key"] = n + "/node.key"
	}
	got := map[string]string{}
	for _, it := range sv.Items {
		got[it.Key] = it.Path
		if it.Mode != nil && *it.Mode != SecretMode {
			c.errorf(where, "identity item %s: mode %o, want 0400", it.Key, *it.Mode)
		}
		if secret != nil {
			if _, ok := secret.Data[it.Key]; !ok {
				c.errorf(where, "identity item %s: no such key in Secret %s", it.Key, secret.Name)
			}
		}
	}
	for k, p := range want {
		if got[k] != p {
			c.errorf(where, "identity Secret volume: want item %s -> %s, got %q", k, p, got[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			c.errorf(where, "identity Secret volume projects %s, which belongs to no pod of this StatefulSet", k)
		}
	}
}

// configMapFile checks that file is a key of a mounted ConfigMap.
func (c *checker) configMapFile(where string, f fleet, mounts map[string]corev1.VolumeMount, vols map[string]corev1.Volume, file, flag string) {
	m, ok := mountOf(mounts, file)
	if !ok {
		c.errorf(where, "%s %s is not on a mounted volume", flag, file)
		return
	}
	if m.SubPath != "" {
		c.errorf(where, "%s %s: a subPath mount never sees ConfigMap updates", flag, file)
	}
	cv := vols[m.Name].ConfigMap
	if cv == nil {
		c.errorf(where, "%s %s: volume %q is not a ConfigMap", flag, file, m.Name)
		return
	}
	cm := f.configMaps[cv.Name]
	if cm == nil {
		c.errorf(where, "%s %s: ConfigMap %q is not in the kustomization", flag, file, cv.Name)
		return
	}
	rel := strings.TrimPrefix(path.Clean(file), path.Clean(m.MountPath)+"/")
	key := rel
	if len(cv.Items) > 0 {
		key = ""
		for _, it := range cv.Items {
			if it.Path == rel {
				key = it.Key
			}
		}
	}
	if _, ok := cm.Data[key]; !ok || key == "" {
		c.errorf(where, "%s %s: ConfigMap %s has no key for %q", flag, file, cm.Name, rel)
	}
}

func (c *checker) checkProbe(where string, p *corev1.Probe, wantPath string, args map[string]string) {
	switch {
	case p == nil:
		c.errorf(where, "missing")
	case p.HTTPGet != nil:
		if p.HTTPGet.Path != wantPath {
			c.errorf(where, "path %q, want %s", p.HTTPGet.Path, wantPath)
		}
		if p.HTTPGet.Port != intstr.FromString("api") && p.HTTPGet.Port != intstr.FromInt32(APIPort) {
			c.errorf(where, "port %s, want api (%d)", p.HTTPGet.Port.String(), APIPort)
		}
	case p.Exec != nil:
		c.checkExec(where, p.Exec)
		if !strings.Contains(strings.Join(p.Exec.Command, " "), fmt.Sprintf("127.0.0.1:%d%s", APIPort, wantPath)) {
			c.errorf(where, "exec %q does not probe http://127.0.0.1:%d%s", p.Exec.Command, APIPort, wantPath)
		}
	default:
		c.errorf(where, "want an httpGet or exec (/outpost probe) probe of %s", wantPath)
	}
}

// checkExec refuses commands the scratch image cannot run.
func (c *checker) checkExec(where string, e *corev1.ExecAction) {
	if len(e.Command) == 0 || e.Command[0] != "/outpost" {
		c.errorf(where, "exec %q: the image is FROM scratch, only /outpost exists (e.g. /outpost probe --url ...)", e.Command)
	}
}

func lifecycleHandler(l *corev1.Lifecycle) *corev1.LifecycleHandler {
	if l == nil {
		return nil
	}
	return l.PreStop
}

// checkPDBs: every StatefulSet has exactly one PodDisruptionBudget with
// maxUnavailable 1 that selects its pods and no others.
func (c *checker) checkPDBs(f fleet) {
	for _, sts := range f.statefulSets {
		tl := labels.Set(sts.Spec.Template.Labels)
		var mine []*policyv1.PodDisruptionBudget
		for _, p := range f.pdbs {
			sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && !sel.Empty() && sel.Matches(tl) {
				mine = append(mine, p)
			}
		}
		if len(mine) != 1 {
			c.errorf("StatefulSet "+sts.Name, "want exactly one PodDisruptionBudget selecting its pods, got %d", len(mine))
			continue
		}
		p := mine[0]
		if p.Spec.MaxUnavailable == nil || *p.Spec.MaxUnavailable != intstr.FromInt32(1) || p.Spec.MinAvailable != nil {
			c.errorf("PodDisruptionBudget "+p.Name, "want maxUnavailable: 1 (and no minAvailable)")
		}
	}
	for _, p := range f.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() {
			c.errorf("PodDisruptionBudget "+p.Name, "empty or invalid selector: %v", err)
			continue
		}
		n := 0
		for _, sts := range f.statefulSets {
			if sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
				n++
			}
		}
		if n != 1 {
			c.errorf("PodDisruptionBudget "+p.Name, "selects the pods of %d StatefulSets, want 1", n)
		}
	}
}

// checkAPIService: a ClusterIP Service on port 7700 in front of every pod.
func (c *checker) checkAPIService(f fleet) {
	for _, s := range f.services {
		if s.Spec.ClusterIP == corev1.ClusterIPNone || (s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP) {
			continue
		}
		if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
			return p.Port == APIPort && (p.TargetPort == intstr.FromString("api") || p.TargetPort == intstr.FromInt32(APIPort))
		}) {
			continue
		}
		all := len(s.Spec.Selector) > 0
		for _, sts := range f.statefulSets {
			all = all && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels))
		}
		if all {
			return
		}
	}
	c.errorf("Service", "no ClusterIP Service on port %d selecting the pods of every StatefulSet (the app API)", APIPort)
}

// checkTrust: fleet.trust lists exactly the pods, at their headless-Service
// addresses, and the Secret holds each one's identity and matching key.
func (c *checker) checkTrust(f fleet) {
	var cm *corev1.ConfigMap
	for _, m := range f.configMaps {
		if _, ok := m.Data["fleet.trust"]; ok {
			if cm != nil {
				c.errorf("ConfigMap "+m.Name, "a second ConfigMap with fleet.trust (%s has one)", cm.Name)
			}
			cm = m
		}
	}
	if cm == nil {
		c.errorf("ConfigMap", "no ConfigMap with fleet.trust")
		return
	}
	where := "ConfigMap " + cm.Name + " fleet.trust"
	if _, ok := cm.Data["schema.sql"]; !ok {
		c.errorf("ConfigMap "+cm.Name, "no schema.sql")
	}
	entries := map[string]map[string]string{}
	for i, line := range strings.Split(cm.Data["fleet.trust"], "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kv := map[string]string{}
		for _, field := range strings.Fields(line) {
			k, v, ok := strings.Cut(field, "=")
			if !ok {
				c.errorf(where, "line %d: %q is not key=value", i+1, field)
			}
			kv[k] = v
		}
		if _, dup := entries[kv["name"]]; dup {
			c.errorf(where, "line %d: %s twice", i+1, kv["name"])
		}
		entries[kv["name"]] = kv
	}
	want := map[string]bool{}
	for _, sts := range f.statefulSets {
		replicas := int32(1)
		if sts.Spec.Replicas != nil {
			replicas = *sts.Spec.Replicas
		}
		for i := range replicas {
			pod := fmt.Sprintf("%s-%d", sts.Name, i)
			name := nodeName(pod)
			want[name] = true
			e := entries[name]
			if e == nil {
				c.errorf(where, "no entry for %s (pod %s); run outpost init-k8s", name, pod)
				continue
			}
			if e["addr"] != peerAddr(pod, sts.Spec.ServiceName) {
				c.errorf(where, "%s: addr %q, want %q", name, e["addr"], peerAddr(pod, sts.Spec.ServiceName))
			}
			if comp := sts.Spec.Template.Labels["app.kubernetes.io/component"]; e["role"] != comp {
				c.errorf(where, "%s: role %q, but StatefulSet %s runs %s pods", name, e["role"], sts.Name, comp)
			}
			if farm := sts.Spec.Template.Labels["outpost.dev/farm"]; farm != "" && e["farm"] != farm {
				c.errorf(where, "%s: farm %q, but StatefulSet %s is farm %s", name, e["farm"], sts.Name, farm)
			}
		}
	}
	for name := range entries {
		if !want[name] {
			c.errorf(where, "entry %s is no pod of any StatefulSet", name)
		}
	}
	// Every entry's identity and key in the Secret the pods mount.
	for _, sec := range f.secrets {
		for name, e := range entries {
			idb, okID := sec.Data[name+"__identity.json"]
			keyb, okKey := sec.Data[name+"__node.key"]
			if !okID && !okKey {
				continue
			}
			sw := "Secret " + sec.Name + " " + name
			if !okID || !okKey {
				c.errorf(sw, "has only one of __identity.json and __node.key")
				continue
			}
			var id struct{ Name, Location, Farm, Role, Code string }
			dec := json.NewDecoder(strings.NewReader(string(idb)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&id); err != nil {
				c.errorf(sw, "identity.json: %v", err)
			} else if id.Name != name || id.Role != e["role"] || id.Code != e["code"] || id.Location != e["location"] || (id.Farm != e["farm"] && !(id.Farm == "" && e["farm"] == "-")) {
				c.errorf(sw, "identity.json %+v disagrees with fleet.trust %v", id, e)
			}
			if pub, err := publicKey(keyb); err != nil {
				c.errorf(sw, "node.key: %v", err)
			} else if "ed25519:"+base64.RawURLEncoding.EncodeToString(pub) != e["key"] {
				c.errorf(sw, "node.key's public key is not fleet.trust's key %s: regenerate both with outpost init-k8s", e["key"])
			}
		}
	}
}

// publicKey parses a PKCS#8 PEM ed25519 private key.
func publicKey(b []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an ed25519 key but %T", k)
	}
	return priv.Public().(ed25519.PublicKey), nil
}

// parseArgs reads --k=v, --k v and boolean --k flags after the subcommand.
func parseArgs(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimLeft(a, "-")
		if k, v, ok := strings.Cut(a, "="); ok {
			out[k] = v
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") && !boolFlags[a] {
			out[a] = args[i+1]
			i++
		} else {
			out[a] = "true"
		}
	}
	return out
}

// boolFlags are the boolean flags of outpost serve.
var boolFlags = map[string]bool{"name-from-hostname": true, "ephemeral": true}

func durationArg(c *checker, where string, args map[string]string, name string, def time.Duration) time.Duration {
	v, ok := args[name]
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.errorf(where, "--%s %q: %v", name, v, err)
	}
	return d
}

// mountOf is the mount that holds file.
func mountOf(mounts map[string]corev1.VolumeMount, file string) (corev1.VolumeMount, bool) {
	for p := path.Clean(file); ; p = path.Dir(p) {
		if m, ok := mounts[p]; ok {
			return m, true
		}
		if p == "/" || p == "." {
			return corev1.VolumeMount{}, false
		}
	}
}

func truthy(bs ...*bool) bool {
	if b := first(bs...); b != nil {
		return *b
	}
	return false
}

// first is the first non-nil pointer: a container setting before the pod's.
func first[T any](ps ...*T) *T {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}
