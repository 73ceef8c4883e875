// Package graph is meshlens' domain core: the live service graph built from
// normalised call observations. It imports no other package of the project.
package graph

import (
	"fmt"
	"strings"
)

// Kind says what a node is.
type Kind uint8

const (
	KindWorkload Kind = iota
	KindService
	KindUnknown // a caller with no identity
	KindExternal
	KindGateway
	KindDatabase
	KindQueue
	KindWaypoint
	numKinds
)

var kindNames = [numKinds]string{"workload", "service", "unknown", "external", "gateway", "database", "queue", "waypoint"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind maps a kind name back to a Kind.
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("unknown node kind %q", s)
}

// Protocol of an edge.
type Protocol uint8

const (
	ProtoHTTP Protocol = iota
	ProtoGRPC
	ProtoTCP
	numProtocols
)

var protoNames = [numProtocols]string{"http", "grpc", "tcp"}

func (p Protocol) String() string {
	if p < numProtocols {
		return protoNames[p]
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// ParseProtocol maps a protocol name ("http", "grpc", "tcp"; case-insensitive) to a Protocol.
func ParseProtocol(s string) (Protocol, error) {
	ls := strings.ToLower(s)
	for i, n := range protoNames {
		if n == ls {
			return Protocol(i), nil
		}
	}
	return 0, fmt.Errorf("unknown protocol %q", s)
}

// Node is the full identity of one end of a call as reported. Collectors fill
// what they know; views project it onto coarser identities.
type Node struct {
	Cluster   string
	Namespace string
	Workload  string // e.g. reviews-v2
	App       string // canonical service, e.g. reviews
	Version   string // canonical revision, e.g. v2
	Service   string // service host, e.g. reviews.default.svc.cluster.local
	Kind      Kind
}

// UnknownNode is the caller used when an observation carries no source identity.
var UnknownNode = Node{Workload: "unknown", Kind: KindUnknown}

// IsZero reports whether the node carries no identity at all.
func (n Node) IsZero() bool {
	return n.Workload == "" && n.App == "" && n.Service == "" && n.Namespace == "" && n.Cluster == ""
}

// Name is the most specific human name the node has.
func (n Node) Name() string {
	switch {
	case n.Workload != "":
		return n.Workload
	case n.App != "":
		return n.App
	case n.Service != "":
		return n.Service
	}
	return "unknown"
}

// appName is the app a node belongs to, falling back to its workload or service.
func (n Node) appName() string {
	switch {
	case n.App != "":
		return n.App
	case n.Workload != "":
		return n.Workload
	case n.Service != "":
		return serviceShortName(n.Service)
	}
	return "unknown"
}

func serviceShortName(host string) string {
	if i := strings.IndexByte(host, '.'); i > 0 && strings.HasSuffix(host, ".svc.cluster.local") {
		return host[:i]
	}
	return host
}

// View is a way of grouping nodes, as Kiali offers.
type View uint8

const (
	ViewWorkload View = iota
	ViewApp
	ViewVersionedApp
	ViewService
	numViews
)

var viewNames = [numViews]string{"workload", "app", "versionedApp", "service"}

func (v View) String() string {
	if v < numViews {
		return viewNames[v]
	}
	return fmt.Sprintf("view(%d)", uint8(v))
}

// ParseView accepts the Kiali spellings (workload, app, versionedApp, service),
// case-insensitively, with "versioned-app" as an alias.
func ParseView(s string) (View, error) {
	ls := strings.ToLower(strings.ReplaceAll(s, "-", ""))
	if ls == "" {
		return ViewWorkload, nil
	}
	for i, n := range viewNames {
		if strings.ToLower(n) == ls {
			return View(i), nil
		}
	}
	return 0, fmt.Errorf("unknown view %q (want workload, app, versionedApp or service)", s)
}

// Project maps a full node identity onto the identity shown in view v. Nodes
// that are not workloads (databases, externals, unknown callers) keep their
// own name in every view.
func (v View) Project(n Node) Node {
	switch n.Kind {
	case KindWorkload, KindGateway, KindWaypoint, KindService:
	default:
		return Node{Cluster: n.Cluster, Namespace: n.Namespace, Workload: n.Name(), Kind: n.Kind}
	}
	switch v {
	case ViewApp:
		return Node{Cluster: n.Cluster, Namespace: n.Namespace, App: n.appName(), Kind: kindForGroup(n.Kind)}
	case ViewVersionedApp:
		return Node{Cluster: n.Cluster, Namespace: n.Namespace, App: n.appName(), Version: n.Version, Kind: kindForGroup(n.Kind)}
	case ViewService:
		svc := n.Service
		if svc == "" {
			svc = n.appName()
		}
		return Node{Cluster: n.Cluster, Namespace: n.Namespace, Service: svc, Kind: kindForGroup(n.Kind)}
	default:
		if n.Workload == "" {
			// Only a service is known (e.g. the destination could not be resolved to a workload).
			return Node{Cluster: n.Cluster, Namespace: n.Namespace, Service: n.Service, App: n.App, Kind: KindService}
		}
		return Node{Cluster: n.Cluster, Namespace: n.Namespace, Workload: n.Workload, App: n.App, Version: n.Version, Kind: n.Kind}
	}
}

func kindForGroup(k Kind) Kind {
	if k == KindService {
		return KindService
	}
	return k
}

// ID is a stable, URL-safe identifier of a projected node, unique within a view.
func (n Node) ID() string {
	var b strings.Builder
	b.Grow(64)
	b.WriteString(n.Kind.String())
	for _, p := range [...]string{n.Cluster, n.Namespace, n.Workload, n.App, n.Version, n.Service} {
		b.WriteByte('|')
		b.WriteString(p)
	}
	return b.String()
}

// Label is the short text a UI shows for a projected node.
func (n Node) Label(v View) string {
	switch {
	case v == ViewVersionedApp && n.Version != "" && n.App != "":
		return n.App + " " + n.Version
	case n.Workload != "":
		return n.Workload
	case n.App != "":
		return n.App
	case n.Service != "":
		return serviceShortName(n.Service)
	}
	return "unknown"
}

// k8sSafe is the alphabet Kubernetes uses for ReplicaSet hashes and pod suffixes.
const k8sSafe = "bcdfghjklmnpqrstvwxz2456789"

func allIn(s, alphabet string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(alphabet, rune(s[i])) {
			return false
		}
	}
	return true
}

// WorkloadOfPod is the workload a pod belongs to: the pod name without its
// ReplicaSet hash and pod suffix (Deployment pods, "<svc>-<hash>-<xxxxx>"),
// without its suffix only (DaemonSet/Job pods), or without its ordinal
// (StatefulSet pods, "<svc>-0").
func WorkloadOfPod(pod string) string {
	parts := strings.Split(pod, "-")
	if len(parts) < 2 {
		return pod
	}
	last := parts[len(parts)-1]
	switch {
	case len(last) == 5 && allIn(last, k8sSafe):
		parts = parts[:len(parts)-1]
		if n := len(parts); n >= 2 {
			h := parts[n-1]
			if len(h) >= 6 && len(h) <= 10 && allIn(h, k8sSafe) {
				parts = parts[:n-1]
			}
		}
	case last != "" && allIn(last, "0123456789"):
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, "-")
}
