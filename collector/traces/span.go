// Package traces ingests spans (OTLP, Jaeger, Zipkin), pairs them into calls
// and feeds the service graph with one observation per call.
//
// Every protocol is decoded into the one Span type below; the Pairer turns
// spans into graph observations. Dataset readers produce the same Span type
// and drive the same Pairer in virtual time.
package traces

import (
	"encoding/hex"
	"strings"

	"github.com/meshlens/meshlens/graph"
)

// TraceID identifies a trace.
type TraceID [16]byte

// SpanID identifies a span within a trace.
type SpanID [8]byte

// IsZero reports whether the ID is all zeros (invalid in every protocol).
func (t TraceID) IsZero() bool { return t == TraceID{} }

// IsZero reports whether the ID is all zeros (no parent / invalid).
func (s SpanID) IsZero() bool { return s == SpanID{} }

func (t TraceID) String() string { return hex.EncodeToString(t[:]) }
func (s SpanID) String() string  { return hex.EncodeToString(s[:]) }

// SpanKind is the role of a span in a call, as OTLP defines it.
type SpanKind uint8

const (
	KindUnspecified SpanKind = iota
	KindInternal
	KindServer
	KindClient
	KindProducer
	KindConsumer
)

var kindNames = [...]string{"unspecified", "internal", "server", "client", "producer", "consumer"}

func (k SpanKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unspecified"
}

// ParseSpanKind maps the names used by Jaeger and Zipkin tags ("client",
// "SERVER", ...) to a SpanKind; unknown names are KindUnspecified.
func ParseSpanKind(s string) SpanKind {
	switch strings.ToLower(s) {
	case "internal":
		return KindInternal
	case "server":
		return KindServer
	case "client":
		return KindClient
	case "producer":
		return KindProducer
	case "consumer":
		return KindConsumer
	}
	return KindUnspecified
}

// StatusCode is the span status.
type StatusCode uint8

const (
	StatusUnset StatusCode = iota
	StatusOK
	StatusError
)

// Peer holds the attributes that name the other side of a CLIENT or PRODUCER
// span, used to build a virtual node when no instrumented partner answers.
type Peer struct {
	Service              string // peer.service
	Address              string // server.address, net.peer.name
	DBSystem             string // db.system
	DBNamespace          string // db.namespace, db.name
	MessagingSystem      string // messaging.system
	MessagingDestination string // messaging.destination.name
	HTTPHost             string // host of url.full / http.url
}

// Span is the protocol-independent span every decoder produces.
type Span struct {
	TraceID  TraceID
	SpanID   SpanID
	ParentID SpanID // zero for a root span
	Kind     SpanKind
	Name     string // operation name

	// Service is the node identity of the service that recorded the span,
	// mapped from resource attributes by NodeFromResource.
	Service graph.Node

	StartUnixNano, EndUnixNano int64

	Status     StatusCode
	HTTPStatus uint16 // 0 = not set
	GRPCStatus int16  // -1 = not set
	Protocol   graph.Protocol
	Peer       Peer

	// SamplingRatio is the probability with which the span was sampled (0 =
	// unknown, counted as 1): each sampled span stands for 1/ratio calls.
	SamplingRatio float64
}

// ResourceAttrs are the resource attributes that identify a service.
type ResourceAttrs struct {
	ServiceName      string // service.name
	ServiceNamespace string // service.namespace
	ServiceVersion   string // service.version
	K8sNamespace     string // k8s.namespace.name
	K8sDeployment    string // k8s.deployment.name
	K8sStatefulSet   string // k8s.statefulset.name
	K8sDaemonSet     string // k8s.daemonset.name
	K8sCluster       string // k8s.cluster.name
}

// set records one resource attribute; it reports whether the key was one of ours.
func (r *ResourceAttrs) set(key, val string) bool {
	switch key {
	case "service.name":
		r.ServiceName = val
	case "service.namespace":
		r.ServiceNamespace = val
	case "service.version":
		r.ServiceVersion = val
	case "k8s.namespace.name":
		r.K8sNamespace = val
	case "k8s.deployment.name":
		r.K8sDeployment = val
	case "k8s.statefulset.name":
		r.K8sStatefulSet = val
	case "k8s.daemonset.name":
		r.K8sDaemonSet = val
	case "k8s.cluster.name":
		r.K8sCluster = val
	default:
		return false
	}
	return true
}

// Identity says how resource attributes map onto graph nodes. It must agree
// with the metrics collector so a service seen by both is one node.
type Identity struct {
	// DefaultCluster fills Node.Cluster when k8s.cluster.name is absent
	// (Istio's metrics say "Kubernetes" unless a cluster is named).
	DefaultCluster string `yaml:"defaultCluster"`
	// ServiceDomain, when set and the namespace is known, fills Node.Service
	// with "<service.name>.<namespace>.<domain>" as Istio's destination_service does.
	ServiceDomain string `yaml:"serviceDomain"`
}

// UnknownService is the service name of spans that carry none (as OTel SDKs do).
const UnknownService = "unknown_service"

// NodeFromResource maps resource attributes onto the graph's node identity:
// Workload from k8s.deployment.name (else statefulset, daemonset, else
// service.name), App = service.name, Version = service.version, Namespace
// from k8s.namespace.name else service.namespace, Cluster from k8s.cluster.name.
func (id Identity) NodeFromResource(r *ResourceAttrs) graph.Node {
	app := r.ServiceName
	if app == "" {
		app = UnknownService
	}
	n := graph.Node{
		Cluster:   r.K8sCluster,
		Namespace: r.K8sNamespace,
		App:       app,
		Version:   r.ServiceVersion,
		Kind:      graph.KindWorkload,
	}
	if n.Cluster == "" {
		n.Cluster = id.DefaultCluster
	}
	if n.Namespace == "" {
		n.Namespace = r.ServiceNamespace
	}
	switch {
	case r.K8sDeployment != "":
		n.Workload = r.K8sDeployment
	case r.K8sStatefulSet != "":
		n.Workload = r.K8sStatefulSet
	case r.K8sDaemonSet != "":
		n.Workload = r.K8sDaemonSet
	default:
		n.Workload = app
	}
	if id.ServiceDomain != "" && r.K8sNamespace != "" {
		n.Service = app + "." + r.K8sNamespace + "." + id.ServiceDomain
	}
	return n
}

// spanAttrs collects the span attributes the pairer needs while a decoder
// walks a span's attributes once.
type spanAttrs struct {
	peer       Peer
	httpStatus uint16
	grpcStatus int16
	rpcSystem  string
	http       bool
	sampling   float64
	kind       SpanKind // from a span.kind tag (Jaeger, Zipkin)
	err        bool     // error=true tag (Jaeger, Zipkin)
}

func newSpanAttrs() spanAttrs { return spanAttrs{grpcStatus: -1} }

// str records a string attribute.
func (a *spanAttrs) str(key, val string) {
	switch key {
	case "peer.service":
		a.peer.Service = val
	case "server.address", "net.peer.name":
		if a.peer.Address == "" || key == "server.address" {
			a.peer.Address = val
		}
	case "db.system", "db.system.name":
		a.peer.DBSystem = val
	case "db.namespace", "db.name":
		if a.peer.DBNamespace == "" || key == "db.namespace" {
			a.peer.DBNamespace = val
		}
	case "messaging.system":
		a.peer.MessagingSystem = val
	case "messaging.destination.name", "messaging.destination":
		if a.peer.MessagingDestination == "" || key == "messaging.destination.name" {
			a.peer.MessagingDestination = val
		}
	case "url.full", "http.url":
		a.http = true
		if a.peer.HTTPHost == "" {
			a.peer.HTTPHost = hostOfURL(val)
		}
	case "rpc.system":
		a.rpcSystem = val
	case "http.method", "http.request.method", "http.route", "url.path", "http.target":
		a.http = true
	case "span.kind":
		a.kind = ParseSpanKind(val)
	case "error", "otel.status_code":
		if strings.EqualFold(val, "true") || val == "ERROR" {
			a.err = true
		}
	case "http.status_code", "http.response.status_code", "rpc.grpc.status_code":
		var n int64
		for i := 0; i < len(val) && i < 6; i++ {
			c := val[i]
			if c < '0' || c > '9' {
				return
			}
			n = n*10 + int64(c-'0')
		}
		a.int(key, n)
	}
}

// int records an integer attribute.
func (a *spanAttrs) int(key string, v int64) {
	switch key {
	case "http.status_code", "http.response.status_code":
		a.http = true
		if v > 0 && v < 1000 {
			a.httpStatus = uint16(v)
		}
	case "rpc.grpc.status_code":
		if v >= 0 && v < 100 {
			a.grpcStatus = int16(v)
		}
	case "SampleRate": // Honeycomb/Refinery convention: one span stands for N
		if v > 1 {
			a.sampling = 1 / float64(v)
		}
	}
}

// float records a float attribute.
func (a *spanAttrs) float(key string, v float64) {
	switch key {
	case "sampling.probability", "sampler.param":
		if v > 0 && v <= 1 {
			a.sampling = v
		}
	}
}

func (a *spanAttrs) protocol() graph.Protocol {
	switch {
	case a.rpcSystem == "grpc" || a.grpcStatus >= 0:
		return graph.ProtoGRPC
	case a.http:
		return graph.ProtoHTTP
	case a.peer.DBSystem != "" || a.peer.MessagingSystem != "":
		return graph.ProtoTCP
	}
	return graph.ProtoHTTP
}

// fill copies what was collected into s.
func (a *spanAttrs) fill(s *Span) {
	s.Peer = a.peer
	s.HTTPStatus = a.httpStatus
	s.GRPCStatus = a.grpcStatus
	s.Protocol = a.protocol()
	if a.sampling > 0 {
		s.SamplingRatio = a.sampling
	}
	if a.err && s.Status == StatusUnset {
		s.Status = StatusError
	}
	if s.Kind == KindUnspecified && a.kind != KindUnspecified {
		s.Kind = a.kind
	}
}

// hostOfURL returns the host (without port or userinfo) of an absolute URL.
func hostOfURL(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return ""
	}
	h := u[i+3:]
	if j := strings.IndexAny(h, "/?#"); j >= 0 {
		h = h[:j]
	}
	if j := strings.LastIndexByte(h, '@'); j >= 0 {
		h = h[j+1:]
	}
	if strings.HasPrefix(h, "[") {
		if j := strings.IndexByte(h, ']'); j > 0 {
			return h[1:j]
		}
	}
	if j := strings.LastIndexByte(h, ':'); j >= 0 {
		h = h[:j]
	}
	return h
}

// samplingFromTraceState reads the OTel sampling threshold ("ot=th:HEX") from
// a W3C tracestate: the span was kept with probability 1 - th/2^56.
func samplingFromTraceState(ts string) float64 {
	i := strings.Index(ts, "ot=")
	if i < 0 {
		return 0
	}
	v := ts[i+3:]
	if j := strings.IndexByte(v, ','); j >= 0 {
		v = v[:j]
	}
	for _, part := range strings.Split(v, ";") {
		th, ok := strings.CutPrefix(part, "th:")
		if !ok || len(th) == 0 || len(th) > 14 {
			continue
		}
		var x uint64
		for k := 0; k < 14; k++ {
			var d uint64
			if k < len(th) {
				c := th[k]
				switch {
				case c >= '0' && c <= '9':
					d = uint64(c - '0')
				case c >= 'a' && c <= 'f':
					d = uint64(c-'a') + 10
				default:
					return 0
				}
			}
			x = x<<4 | d
		}
		p := 1 - float64(x)/float64(uint64(1)<<56)
		if p > 0 && p <= 1 {
			return p
		}
	}
	return 0
}
