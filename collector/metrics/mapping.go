package metrics

import (
	"slices"
	"strconv"
	"strings"

	"github.com/meshlens/meshlens/graph"
)

type dialect uint8

const (
	dialectIstio dialect = iota + 1
	dialectLinkerd
	dialectEnvoy
)

// mapped says what a series is: its role and how to build its group.
type mapped struct {
	role    role
	class   int8
	le      float64
	known   bool // a series of a known family that adds nothing (e.g. _count)
	dialect dialect
	tcp     bool // an L4 family
	// swapBytes: ztunnel source reports swap sent and received.
	sent, recv bool
}

var (
	flagsConnect    = graph.ParseFlags("UF,URX,UH")
	flagsNoResponse = graph.ParseFlags("DC,UT")
)

func ignoreKnown() mapped { return mapped{known: true} }

// mapSeries picks the dialect and role of a series from its name and labels.
func mapSeries(name string, ls []label) mapped {
	switch {
	case strings.HasSuffix(name, "_created"):
		return ignoreKnown() // OpenMetrics' counter creation times
	case strings.HasPrefix(name, "istio_"):
		return mapIstio(name, ls)
	case strings.HasPrefix(name, "envoy_cluster_"):
		return mapEnvoy(name, ls)
	case hasLabel(ls, "direction"):
		return mapLinkerd(name, ls)
	}
	return mapped{}
}

func mapIstio(name string, ls []label) mapped {
	m := mapped{dialect: dialectIstio}
	switch name {
	case "istio_requests_total":
		m.role = roleRequests
	case "istio_request_duration_milliseconds_bucket":
		le, ok := parseLE(labelValue(ls, "le"))
		if !ok {
			return mapped{}
		}
		m.role, m.le = roleBucket, le
	case "istio_request_bytes_sum":
		m.role = roleReqBytes
	case "istio_response_bytes_sum":
		m.role = roleRespBytes
	case "istio_tcp_sent_bytes_total":
		m.tcp, m.sent = true, true
	case "istio_tcp_received_bytes_total":
		m.tcp, m.recv = true, true
	case "istio_tcp_connections_opened_total":
		m.tcp, m.role = true, roleConnOpened
	case "istio_tcp_connections_closed_total":
		m.tcp, m.role = true, roleConnClosed
	case "istio_request_duration_milliseconds_sum", "istio_request_duration_milliseconds_count",
		"istio_request_bytes_bucket", "istio_request_bytes_count",
		"istio_response_bytes_bucket", "istio_response_bytes_count",
		"istio_request_messages_total", "istio_response_messages_total", "istio_build":
		return ignoreKnown()
	default:
		return mapped{}
	}
	if m.sent || m.recv {
		// Istio: sent = response bytes, received = request bytes, as seen by the
		// reporter; ztunnel's source reports have them the other way round.
		swap := isZtunnel(ls) && labelValue(ls, "reporter") == "source"
		if m.sent != swap {
			m.role = roleRespBytes
		} else {
			m.role = roleReqBytes
		}
	}
	return m
}

func mapLinkerd(name string, ls []label) mapped {
	m := mapped{dialect: dialectLinkerd}
	switch name {
	case "response_total":
		m.role = roleRequests
	case "response_latency_ms_bucket":
		le, ok := parseLE(labelValue(ls, "le"))
		if !ok {
			return mapped{}
		}
		m.role, m.le = roleBucket, le
	case "tcp_open_total":
		m.tcp, m.role = true, roleConnOpened
	case "tcp_close_total":
		m.tcp, m.role = true, roleConnClosed
	case "tcp_write_bytes_total":
		m.tcp, m.role = true, roleReqBytes
	case "tcp_read_bytes_total":
		m.tcp, m.role = true, roleRespBytes
	case "request_total", "response_latency_ms_sum", "response_latency_ms_count",
		"tcp_open_connections", "tcp_connection_duration_ms_bucket",
		"tcp_connection_duration_ms_sum", "tcp_connection_duration_ms_count", "route_request_total":
		// request_total counts what response_total also counts; tcp_open_connections is a gauge.
		return ignoreKnown()
	default:
		return mapped{}
	}
	dir := labelValue(ls, "direction")
	if dir == "inbound" && labelValue(ls, "tls") == "true" {
		// A meshed caller's own proxy reports this traffic outbound, with the
		// callee's workload; inbound only knows the caller's identity, so
		// drawing it too would show the same traffic twice.
		return ignoreKnown()
	}
	if dir != "inbound" && dir != "outbound" {
		return mapped{}
	}
	if m.tcp && labelValue(ls, "peer") == "src" && dir == "outbound" {
		return ignoreKnown()
	}
	if m.tcp && dir == "inbound" {
		// Inbound: the proxy read the request and wrote the response.
		switch m.role {
		case roleReqBytes:
			m.role = roleRespBytes
		case roleRespBytes:
			m.role = roleReqBytes
		}
	}
	return m
}

func mapEnvoy(name string, ls []label) mapped {
	m := mapped{dialect: dialectEnvoy}
	cluster := labelValue(ls, "envoy_cluster_name")
	if cluster == "" || envoyInternalCluster(cluster) {
		return ignoreKnown()
	}
	switch name {
	case "envoy_cluster_upstream_rq_total":
		m.role = roleRequests
	case "envoy_cluster_upstream_rq_xx":
		m.role = roleErrors
		switch labelValue(ls, "envoy_response_code_class") {
		case "5":
			m.class = int8(graph.Err5xx)
		case "4":
			m.class = int8(graph.Err4xx)
		default:
			return ignoreKnown()
		}
	case "envoy_cluster_upstream_rq_time_bucket":
		le, ok := parseLE(labelValue(ls, "le"))
		if !ok {
			return mapped{}
		}
		m.role, m.le = roleBucket, le
	case "envoy_cluster_upstream_rq_time_sum", "envoy_cluster_upstream_rq_time_count":
		return ignoreKnown()
	default:
		// Envoy has hundreds of cluster stats; the ones above make the edge.
		return ignoreKnown()
	}
	return m
}

func envoyInternalCluster(c string) bool {
	switch c {
	case "prometheus_stats", "xds-grpc", "sds-grpc", "agent", "zipkin", "BlackHoleCluster", "InboundPassthroughClusterIpv4", "InboundPassthroughClusterIpv6":
		return true
	}
	return strings.HasPrefix(c, "inbound|")
}

func parseLE(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// groupKey is the series' identity without what varies inside a group.
func (m mapped) groupKey(ls []label) string {
	var b strings.Builder
	b.WriteByte(byte(m.dialect))
	if m.tcp {
		b.WriteByte('t')
	}
	sorted := make([]label, 0, len(ls))
	for _, l := range ls {
		switch l.Name {
		case "__name__", "le":
			continue
		case "envoy_response_code_class", "classification":
			if m.dialect != dialectIstio {
				continue
			}
		}
		sorted = append(sorted, l)
	}
	slices.SortFunc(sorted, func(a, b label) int { return strings.Compare(a.Name, b.Name) })
	for _, l := range sorted {
		b.WriteByte(0xff)
		b.WriteString(l.Name)
		b.WriteByte(0xfe)
		b.WriteString(l.Value)
	}
	return b.String()
}

func (m mapped) newGroup(in *ingester, ls []label) *group {
	g := &group{errClass: -1}
	switch m.dialect {
	case dialectIstio:
		in.istioGroup(g, m, ls)
	case dialectLinkerd:
		in.linkerdGroup(g, m, ls)
	case dialectEnvoy:
		in.envoyGroup(g, ls)
	}
	g.tmpl.Signal = graph.SignalMetrics
	g.pair = pair{g.tmpl.Src.Namespace, g.tmpl.Src.Name(), g.tmpl.Dst.Namespace, g.tmpl.Dst.Name()}
	return g
}

// val reads a label, mapping Istio's "unknown" to empty and capping its length.
func (in *ingester) val(ls []label, name string) string {
	v := labelValue(ls, name)
	if v == "unknown" {
		return ""
	}
	return in.capLabel(v)
}

func (in *ingester) istioGroup(g *group, m mapped, ls []label) {
	o := &g.tmpl
	zt := isZtunnel(ls)
	switch labelValue(ls, "reporter") {
	case "source":
		o.Reporter = graph.ReporterSource
	case "destination":
		o.Reporter = graph.ReporterDestination
		if zt {
			o.Reporter = graph.ReporterZtunnel
		}
	case "waypoint":
		o.Reporter = graph.ReporterWaypoint
	}
	o.Src = graph.Node{
		Cluster:   in.val(ls, "source_cluster"),
		Namespace: in.val(ls, "source_workload_namespace"),
		Workload:  in.val(ls, "source_workload"),
		App:       in.val(ls, "source_canonical_service"),
		Version:   in.val(ls, "source_canonical_revision"),
		Kind:      graph.KindWorkload,
	}
	if o.Src.Workload == "" {
		o.Src = graph.UnknownNode
	} else if isGateway(o.Src.Workload) || isGateway(o.Src.App) {
		o.Src.Kind = graph.KindGateway
	}
	o.Dst = graph.Node{
		Cluster:   in.val(ls, "destination_cluster"),
		Namespace: in.val(ls, "destination_workload_namespace"),
		Workload:  in.val(ls, "destination_workload"),
		App:       in.val(ls, "destination_canonical_service"),
		Version:   in.val(ls, "destination_canonical_revision"),
		Service:   in.val(ls, "destination_service"),
		Kind:      graph.KindWorkload,
	}
	if o.Dst.Workload == "" {
		host := o.Dst.Service
		if host == "" {
			host = in.val(ls, "destination_service_name")
		}
		ns := in.val(ls, "destination_service_namespace")
		switch {
		case host == "" || host == "BlackHoleCluster":
			o.Dst = graph.Node{Cluster: o.Dst.Cluster, Workload: "unknown", Kind: graph.KindUnknown}
		case ns == "" && !strings.HasSuffix(host, ".svc.cluster.local"):
			o.Dst = graph.Node{Service: host, Kind: graph.KindExternal}
		default:
			o.Dst = graph.Node{Cluster: o.Dst.Cluster, Namespace: ns, Service: host, Kind: graph.KindService}
		}
	} else if isGateway(o.Dst.Workload) {
		o.Dst.Kind = graph.KindGateway
	}
	o.Protocol = protocolOf(labelValue(ls, "request_protocol"))
	if m.tcp {
		o.Protocol = graph.ProtoTCP
	}
	o.Security = securityOf(labelValue(ls, "connection_security_policy"))
	o.SrcPrincipal = in.val(ls, "source_principal")
	o.DstPrincipal = in.val(ls, "destination_principal")
	o.ResponseFlags = graph.ParseFlags(labelValue(ls, "response_flags"))
	code, hasCode := parseCode(labelValue(ls, "response_code"))
	grpcStatus, hasGRPC := parseCode(labelValue(ls, "grpc_response_status"))
	o.ResponseCode, o.GRPCStatus = code, grpcStatus
	if !m.tcp {
		g.errClass = errorClass(code, hasCode, grpcStatus, hasGRPC && o.Protocol == graph.ProtoGRPC, o.ResponseFlags)
		g.l7 = true
	} else if zt {
		o.L4Only = true
		g.l4 = true
	}
}

func (in *ingester) linkerdGroup(g *group, m mapped, ls []label) {
	o := &g.tmpl
	self := graph.Node{
		Namespace: in.val(ls, "namespace"),
		Workload:  firstOf(in, ls, "deployment", "statefulset", "daemonset", "pod"),
		Kind:      graph.KindWorkload,
	}
	if labelValue(ls, "direction") == "outbound" {
		o.Reporter = graph.ReporterSource
		o.Src = self
		o.Dst = graph.Node{
			Namespace: in.val(ls, "dst_namespace"),
			Workload:  firstOf(in, ls, "dst_deployment", "dst_statefulset", "dst_daemonset", "dst_pod"),
			Kind:      graph.KindWorkload,
		}
		if svc := in.val(ls, "dst_service"); svc != "" && o.Dst.Namespace != "" {
			o.Dst.Service = svc + "." + o.Dst.Namespace + ".svc.cluster.local"
		}
		if o.Dst.Workload == "" {
			if o.Dst.Service == "" {
				host := in.val(ls, "authority")
				o.Dst = graph.Node{Service: host, Kind: graph.KindExternal}
			} else {
				o.Dst.Kind = graph.KindService
			}
		}
	} else {
		// Inbound from a caller without identity (see mapLinkerd).
		o.Reporter = graph.ReporterDestination
		o.Src = graph.UnknownNode
		o.Dst = self
	}
	switch labelValue(ls, "tls") {
	case "true":
		o.Security = graph.SecurityMTLS
	case "":
	default:
		o.Security = graph.SecurityPlaintext
	}
	o.SrcPrincipal = in.val(ls, "client_id")
	o.DstPrincipal = in.val(ls, "server_id")
	if m.tcp {
		o.Protocol = graph.ProtoTCP
		o.L4Only = true
		g.l4 = true
		return
	}
	g.l7 = true
	// Linkerd's latency histograms carry no grpc_status, so the protocol
	// cannot be told apart on every series of an edge: all of it is HTTP
	// (gRPC rides on it), and gRPC failures keep their own error class.
	o.Protocol = graph.ProtoHTTP
	grpcStatus, hasGRPC := parseCode(labelValue(ls, "grpc_status"))
	code, hasCode := parseCode(labelValue(ls, "status_code"))
	o.ResponseCode, o.GRPCStatus = code, grpcStatus
	if m.role == roleRequests {
		g.errClass = errorClass(code, hasCode, grpcStatus, hasGRPC, 0)
		if g.errClass < 0 && labelValue(ls, "classification") == "failure" {
			// Linkerd's own classifier said failure (e.g. a response class rule).
			g.errClass = int8(graph.Err5xx)
			if !hasCode {
				g.errClass = int8(graph.ErrNoResponse)
			}
		}
	}
}

func (in *ingester) envoyGroup(g *group, ls []label) {
	o := &g.tmpl
	o.Reporter = graph.ReporterProxy
	o.Protocol = graph.ProtoHTTP
	o.Src = graph.Node{
		Cluster:   in.val(ls, "cluster"),
		Namespace: in.val(ls, "namespace"),
		Workload:  firstOf(in, ls, "workload", "service", "app", "job"),
		Kind:      graph.KindWorkload,
	}
	if o.Src.Workload == "" {
		o.Src = graph.UnknownNode
	}
	c := in.capLabel(labelValue(ls, "envoy_cluster_name"))
	// Istio names outbound clusters "outbound|port|subset|host".
	if parts := strings.Split(c, "|"); len(parts) == 4 && parts[0] == "outbound" {
		host := parts[3]
		o.Dst = graph.Node{Service: host, Version: parts[2], Kind: graph.KindService}
		if h := strings.Split(host, "."); len(h) >= 2 && strings.HasSuffix(host, ".svc.cluster.local") {
			o.Dst.Namespace, o.Dst.App = h[1], h[0]
		}
		return
	}
	if c == "PassthroughCluster" {
		o.Dst = graph.Node{Service: c, Kind: graph.KindExternal}
		return
	}
	o.Dst = graph.Node{Namespace: o.Src.Namespace, Service: c, App: c, Kind: graph.KindService}
}

func firstOf(in *ingester, ls []label, names ...string) string {
	for _, n := range names {
		if v := in.val(ls, n); v != "" {
			return v
		}
	}
	return ""
}

// isZtunnel tells ztunnel's series by the labels a scrape config or Kubernetes
// discovery puts on them (app=ztunnel, pod ztunnel-xxxxx, job ztunnel...).
func isZtunnel(ls []label) bool {
	for _, n := range [...]string{"app", "app_kubernetes_io_name", "k8s_app", "job", "container", "pod", "service_name"} {
		if strings.Contains(labelValue(ls, n), "ztunnel") {
			return true
		}
	}
	return false
}

func isGateway(w string) bool {
	return strings.Contains(w, "ingressgateway") || strings.Contains(w, "egressgateway") || strings.HasSuffix(w, "-gateway")
}

func protocolOf(p string) graph.Protocol {
	switch strings.ToLower(p) {
	case "grpc":
		return graph.ProtoGRPC
	case "tcp":
		return graph.ProtoTCP
	}
	return graph.ProtoHTTP
}

func securityOf(p string) graph.Security {
	switch p {
	case "mutual_tls":
		return graph.SecurityMTLS
	case "none":
		return graph.SecurityPlaintext
	}
	return graph.SecurityUnknown
}

func parseCode(s string) (uint16, bool) {
	if s == "" || s == "-" || s == "unknown" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, false
	}
	return uint16(n), true
}

// errorClass puts a failed request in one class, or returns -1 when the
// outcome is a success. Connection failures and missing responses come from
// Envoy's response flags before the status code, because Envoy answers them
// with a 503/504 of its own.
func errorClass(code uint16, hasCode bool, grpcStatus uint16, isGRPC bool, flags graph.Flags) int8 {
	switch {
	case flags&flagsConnect != 0:
		return int8(graph.ErrConnectFailure)
	case (hasCode && code == 0) || flags&flagsNoResponse != 0:
		return int8(graph.ErrNoResponse)
	case code >= 500:
		return int8(graph.Err5xx)
	case code >= 400:
		return int8(graph.Err4xx)
	case isGRPC && grpcStatus != 0:
		return int8(graph.ErrGRPC)
	}
	return -1
}
