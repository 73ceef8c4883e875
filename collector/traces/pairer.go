package traces

import (
	"encoding/binary"
	"maps"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/meshlens/meshlens/graph"
)

// Sink receives the observations built from spans. Ingest must not keep the
// slice after it returns.
type Sink interface {
	Ingest([]graph.Observation)
}

// PairerConfig bounds the pairing store.
type PairerConfig struct {
	// MaxSpans is how many spans wait for their partners at most; when full
	// the oldest expire first (and are counted as evicted).
	MaxSpans int `yaml:"maxSpans"`
	// Expiry is how long a span waits for its partner, measured on the clock
	// passed to Expire (wall time in the receiver, virtual time in replays).
	Expiry time.Duration `yaml:"expiry"`
	// MaxSpanDuration: longer spans (and spans that end before they start)
	// still count as calls but their latency is ignored.
	MaxSpanDuration time.Duration `yaml:"maxSpanDuration"`
	// MaxClockSkew: a span stamped further than this from the pairer's clock
	// is recorded at the clock's time instead of its own.
	MaxClockSkew time.Duration `yaml:"maxClockSkew"`
}

// DefaultPairerConfig is the store used when nothing is configured.
func DefaultPairerConfig() PairerConfig {
	return PairerConfig{MaxSpans: 500_000, Expiry: 10 * time.Second, MaxSpanDuration: time.Hour, MaxClockSkew: time.Hour}
}

// Validate lists the problems of c, relative to its section.
func (c PairerConfig) Validate() []string {
	var p []string
	if c.MaxSpans < 1 {
		p = append(p, "maxSpans: must be > 0")
	}
	if c.Expiry <= 0 {
		p = append(p, "expiry: must be > 0")
	}
	if c.MaxSpanDuration <= 0 {
		p = append(p, "maxSpanDuration: must be > 0")
	}
	if c.MaxClockSkew <= 0 {
		p = append(p, "maxClockSkew: must be > 0")
	}
	return p
}

// PairerStats counts what happened to spans. Every span added ends in exactly
// one of Paired, Virtual, NoEdge (once it has left the store) or Dropped.
type PairerStats struct {
	Added    uint64 // spans accepted into the store
	Paired   uint64 // left the store after taking part in a call with a partner span
	Virtual  uint64 // left the store unpaired, as a call to/from a virtual node
	NoEdge   uint64 // left the store without being part of any call (internal spans)
	Evicted  uint64 // of those that left, pushed out early because the store was full
	Dropped  uint64 // rejected: no trace/span ID or duplicate span ID
	BadTime  uint64 // latency ignored: end before start or longer than MaxSpanDuration
	Skewed   uint64 // recorded at the clock's time because the span's time was absurd
	Calls    uint64 // observations emitted
	InFlight int    // spans held now
}

// spanKey is a 64-bit hash of (trace, span): maps keyed by it take Go's fast
// path. Entries keep the full IDs and every lookup verifies them, so a
// collision only costs a pairing, never a wrong one.
type spanKey = uint64

func keyOf(t TraceID, s SpanID) spanKey {
	hi := binary.LittleEndian.Uint64(t[:8])
	lo := binary.LittleEndian.Uint64(t[8:])
	x := binary.LittleEndian.Uint64(s[:])
	h := (x ^ lo) * 0x9E3779B97F4A7C15
	h ^= hi * 0xC2B2AE3D27D4EB4F
	return h ^ h>>29
}

// lookup returns the live entry indexed under (t, s), verifying the IDs.
func (p *Pairer) lookup(t TraceID, s SpanID) *entry {
	seq, ok := p.byID[keyOf(t, s)]
	if !ok {
		return nil
	}
	if e := p.live(seq); e != nil && e.trace == t && e.span == s {
		return e
	}
	return nil
}

const (
	fWaiting   uint16 = 1 << iota // parent not seen yet: linked in orphans
	fPaired                       // took part in a call with a partner
	fVirtual                      // emitted a call with a virtual node
	fHasCallee                    // client/producer whose callee is accounted for
	fEntry                        // client span whose same-service child carries the call (gateway hop)
	fBadTime                      // latency unusable
	fShared                       // server half of a Zipkin shared span: no parent relation of its own
)

// entry is a span held in the store, in a compact form.
type entry struct {
	seq          uint64
	trace        TraceID
	span, parent SpanID
	svc, peer    *graph.Node
	start, end   int64
	stamp        int64
	next         uint64 // next waiting sibling, seq+1 (0 = none)
	http         uint16
	grpc         int16
	flags        uint16
	weight       float32
	kind         SpanKind
	status       StatusCode
	proto        graph.Protocol
}

const chunkSize = 1024

// Pairer pairs spans into calls: CLIENT->SERVER by (trace, parent span),
// PRODUCER->CONSUMER likewise, cross-service parent->child relations where
// kinds are missing or unusual, and unpaired spans to virtual nodes when they
// expire. It is safe for concurrent use; the sink is called under its lock.
type Pairer struct {
	cfg  PairerConfig
	sink Sink

	mu                sync.Mutex
	now               int64
	byID              map[spanKey]uint64
	orphans           map[spanKey]uint64 // parent -> newest waiting child (seq+1)
	deletes           int                // map deletes since the maps were last rebuilt
	chunks            [][]entry
	cap               uint64
	head              uint64 // next seq
	tail              uint64 // oldest live seq
	nodes             map[graph.Node]*graph.Node
	known             map[string]*graph.Node // instrumented services by app name
	lastNode, lastSvc *graph.Node
	out               []graph.Observation
	stats             PairerStats
}

const maxInterned = 100_000

// noLatency is merged when a call's latency is unusable: it adds the call
// without a latency value. Read-only.
var noLatency = &graph.Sketch{}

// NewPairer builds an empty store; zero fields of cfg take their defaults.
func NewPairer(cfg PairerConfig, sink Sink) *Pairer {
	d := DefaultPairerConfig()
	if cfg.MaxSpans <= 0 {
		cfg.MaxSpans = d.MaxSpans
	}
	if cfg.Expiry <= 0 {
		cfg.Expiry = d.Expiry
	}
	if cfg.MaxSpanDuration <= 0 {
		cfg.MaxSpanDuration = d.MaxSpanDuration
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = d.MaxClockSkew
	}
	nChunks := (cfg.MaxSpans + chunkSize - 1) / chunkSize
	return &Pairer{
		cfg:     cfg,
		sink:    sink,
		byID:    make(map[spanKey]uint64),
		orphans: make(map[spanKey]uint64),
		chunks:  make([][]entry, nChunks),
		cap:     uint64(nChunks * chunkSize),
		nodes:   make(map[graph.Node]*graph.Node),
		known:   make(map[string]*graph.Node),
	}
}

func (p *Pairer) at(seq uint64) *entry {
	i := seq % p.cap
	c := p.chunks[i/chunkSize]
	if c == nil {
		c = make([]entry, chunkSize)
		p.chunks[i/chunkSize] = c
	}
	return &c[i%chunkSize]
}

// live returns the entry of seq if it is still held.
func (p *Pairer) live(seq uint64) *entry {
	if seq < p.tail || seq >= p.head {
		return nil
	}
	e := p.at(seq)
	if e.seq != seq {
		return nil
	}
	return e
}

func (p *Pairer) intern(n *graph.Node) *graph.Node {
	// Spans come in runs from one resource: a one-entry cache saves hashing the node.
	if p.lastNode != nil && *p.lastNode == *n {
		return p.lastNode
	}
	if q, ok := p.nodes[*n]; ok {
		p.lastNode = q
		return q
	}
	if len(p.nodes) >= maxInterned {
		// Entries keep their pointers; sameNode compares by value when they differ.
		p.nodes = make(map[graph.Node]*graph.Node)
	}
	q := new(graph.Node)
	*q = *n
	p.nodes[*q] = q
	p.lastNode = q
	return q
}

func sameNode(a, b *graph.Node) bool { return a == b || *a == *b }

// Stats returns the counters so far.
func (p *Pairer) Stats() PairerStats {
	p.mu.Lock()
	s := p.stats
	s.InFlight = int(p.head - p.tail)
	p.mu.Unlock()
	return s
}

// Add pairs a batch of spans with what the store holds. Calls whose both
// sides are known are emitted now; the rest wait for Expire.
func (p *Pairer) Add(spans []Span) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range spans {
		p.addLocked(&spans[i])
	}
	p.flushLocked()
}

// Expire moves the pairer's clock to now and lets spans that waited longer
// than the expiry go: unpaired ones become calls with virtual nodes.
func (p *Pairer) Expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ns := now.UnixNano()
	if ns > p.now {
		p.now = ns
	}
	limit := p.now - int64(p.cfg.Expiry)
	for p.tail < p.head {
		e := p.at(p.tail)
		if e.stamp > limit {
			break
		}
		p.finalize(e)
		p.tail++
	}
	p.flushLocked()
}

// Flush lets every held span go as if it had expired (end of a replay, shutdown).
func (p *Pairer) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.tail < p.head {
		p.finalize(p.at(p.tail))
		p.tail++
	}
	p.flushLocked()
}

func (p *Pairer) flushLocked() {
	// A map that only ever deletes and inserts fills with tombstones that
	// lengthen every probe; rebuilding after as many deletes as it holds
	// keeps lookups short at amortised O(1).
	if p.deletes > 4096 && p.deletes > 2*(len(p.byID)+len(p.orphans)) {
		p.byID = maps.Clone(p.byID)
		p.orphans = maps.Clone(p.orphans)
		p.deletes = 0
	}
	if len(p.out) == 0 {
		return
	}
	p.stats.Calls += uint64(len(p.out))
	if p.sink != nil {
		p.sink.Ingest(p.out)
	}
	clear(p.out)
	p.out = p.out[:0]
}

func (p *Pairer) addLocked(s *Span) {
	if s.TraceID.IsZero() || s.SpanID.IsZero() {
		p.stats.Dropped++
		return
	}
	key := keyOf(s.TraceID, s.SpanID)
	var shared *entry
	{
		if ex := p.lookup(s.TraceID, s.SpanID); ex != nil {
			// Zipkin-style shared span: client and server halves carry one ID.
			if (ex.kind == KindClient && s.Kind == KindServer) || (ex.kind == KindServer && s.Kind == KindClient) {
				shared = ex
			} else {
				p.stats.Dropped++
				return
			}
		}
	}
	if p.head-p.tail >= uint64(p.cfg.MaxSpans) {
		p.finalize(p.at(p.tail))
		p.tail++
		p.stats.Evicted++
	}
	seq := p.head
	p.head++
	e := p.at(seq)
	*e = entry{
		seq: seq, trace: s.TraceID, span: s.SpanID, parent: s.ParentID,
		start: s.StartUnixNano, end: s.EndUnixNano, stamp: p.now,
		http: s.HTTPStatus, grpc: s.GRPCStatus, kind: s.Kind, status: s.Status, proto: s.Protocol,
		weight: 1,
	}
	p.stats.Added++
	if r := s.SamplingRatio; r > 0 && r < 1 {
		e.weight = float32(1 / r)
	}
	if d := s.EndUnixNano - s.StartUnixNano; d < 0 || d > int64(p.cfg.MaxSpanDuration) || s.StartUnixNano <= 0 {
		e.flags |= fBadTime
		p.stats.BadTime++
	}
	e.svc = p.intern(&s.Service)
	if e.svc != p.lastSvc && e.svc.App != "" && e.svc.Kind == graph.KindWorkload {
		p.lastSvc = e.svc
		if _, ok := p.known[e.svc.App]; !ok {
			if len(p.known) >= maxInterned {
				p.known = make(map[string]*graph.Node)
			}
			p.known[e.svc.App] = e.svc
		}
	}
	if s.Kind == KindClient || s.Kind == KindProducer || (s.Kind == KindConsumer && s.Peer.MessagingSystem != "") {
		if vn, ok := VirtualNode(&s.Peer); ok {
			e.peer = p.intern(&vn)
		}
	}

	if shared != nil {
		client, server := shared, e
		if e.kind == KindClient {
			client, server = e, shared
		} else {
			p.byID[key] = seq // children of the shared ID belong to the server side
		}
		server.flags |= fShared
		if server.flags&fWaiting != 0 {
			p.unlinkOrphan(server)
		}
		p.pair(client, server)
		if e == server {
			return
		}
	} else {
		p.byID[key] = seq
		// Children that arrived before their parent.
		if head, ok := p.orphans[key]; ok {
			delete(p.orphans, key)
			p.deletes++
			for c := head; c != 0; {
				child := p.live(c - 1)
				if child == nil {
					break
				}
				c = child.next
				child.next = 0
				if child.flags&fWaiting != 0 && child.trace == e.trace && child.parent == e.span {
					child.flags &^= fWaiting
					p.resolve(e, child)
				}
			}
		}
	}

	if e.flags&fShared != 0 {
		return
	}
	switch {
	case e.parent.IsZero():
		if e.kind == KindServer || e.kind == KindConsumer {
			p.fromUnknown(e)
		}
	default:
		pk := keyOf(e.trace, e.parent)
		// parent == span: the server half of a shared span waits for its client half.
		if e.parent != e.span {
			if par := p.lookup(e.trace, e.parent); par != nil {
				p.resolve(par, e)
				return
			}
		}
		e.flags |= fWaiting
		if head, ok := p.orphans[pk]; ok {
			e.next = head
		}
		p.orphans[pk] = seq + 1
	}
}

func (p *Pairer) unlinkOrphan(e *entry) {
	e.flags &^= fWaiting
	pk := keyOf(e.trace, e.parent)
	head, ok := p.orphans[pk]
	if !ok {
		return
	}
	if head == e.seq+1 {
		if e.next == 0 {
			delete(p.orphans, pk)
			p.deletes++
		} else {
			p.orphans[pk] = e.next
		}
		e.next = 0
		return
	}
	for c := head; c != 0; {
		prev := p.live(c - 1)
		if prev == nil {
			return
		}
		if prev.next == e.seq+1 {
			prev.next = e.next
			e.next = 0
			return
		}
		c = prev.next
	}
}

// resolve decides what the relation between parent par and its child x means.
func (p *Pairer) resolve(par, x *entry) {
	switch {
	case (par.kind == KindClient && x.kind == KindServer) || (par.kind == KindProducer && x.kind == KindConsumer):
		p.pair(par, x)
	case !sameNode(par.svc, x.svc):
		// Kinds missing or unusual: the relation crosses services, so the
		// parent's service called the child's (Jaeger's dependency rule).
		dst := x.svc
		if x.kind == KindClient || x.kind == KindProducer {
			// A client span recorded under the callee's own name (a database
			// driver traced as "mysql"): the callee is the span's peer if named.
			if x.peer != nil {
				dst = p.target(x.peer)
			} else if k := kindFromName(x.svc.App); k != graph.KindExternal {
				// A driver traced under the database's name ("redis-manual"):
				// the callee is that database, a virtual node.
				dst = p.intern(&graph.Node{Workload: x.svc.App, Kind: k})
			}
			x.flags |= fHasCallee
		}
		if par.kind == KindClient || par.kind == KindProducer {
			par.flags |= fHasCallee
		}
		par.flags |= fPaired
		x.flags |= fPaired
		p.emit(par.svc, dst, x, x, par, graph.ReporterServerSpan)
	case (par.kind == KindClient || par.kind == KindProducer) && (x.kind == KindClient || x.kind == KindProducer):
		// Two client hops in one service (an Envoy gateway records the
		// downstream and the upstream hop as CLIENT): the child carries the call.
		par.flags |= fHasCallee | fEntry
	}
}

// pair emits the call client->server of two partner spans.
func (p *Pairer) pair(c, s *entry) {
	c.flags |= fPaired | fHasCallee
	s.flags |= fPaired
	p.emit(c.svc, s.svc, s, s, c, graph.ReporterServerSpan)
}

// fromUnknown emits a call into x from an unknown caller (or from the queue
// a consumer read from).
func (p *Pairer) fromUnknown(x *entry) {
	x.flags |= fVirtual
	src := &graph.UnknownNode
	if x.kind == KindConsumer && x.peer != nil {
		src = x.peer
	}
	p.emit(src, x.svc, x, x, nil, graph.ReporterServerSpan)
}

// finalize lets e leave the store.
func (p *Pairer) finalize(e *entry) {
	if k := keyOf(e.trace, e.span); p.byID[k] == e.seq {
		delete(p.byID, k)
		p.deletes++
	}
	if e.flags&fWaiting != 0 {
		p.unlinkOrphan(e)
		if e.kind == KindServer || e.kind == KindConsumer {
			p.fromUnknown(e) // its caller never showed up
		}
	}
	switch {
	case e.kind != KindClient && e.kind != KindProducer:
	case e.flags&fEntry != 0:
		if e.parent.IsZero() {
			p.fromUnknown(e) // the entry hop of a gateway
		}
	case e.flags&fHasCallee == 0:
		src, dst := e.svc, &unknownPeer
		if e.peer != nil {
			dst = p.target(e.peer)
		} else if k := kindFromName(e.svc.App); k != graph.KindExternal {
			// A driver span under the database's own name whose caller
			// never showed up: an unknown caller of that database.
			src, dst = &graph.UnknownNode, p.intern(&graph.Node{Workload: e.svc.App, Kind: k})
		}
		if !sameNode(dst, src) {
			e.flags |= fVirtual
			p.emit(src, dst, e, e, nil, graph.ReporterClientSpan)
		}
	}
	switch {
	case e.flags&fPaired != 0:
		p.stats.Paired++
	case e.flags&fVirtual != 0:
		p.stats.Virtual++
	default:
		p.stats.NoEdge++
	}
	e.seq = math.MaxUint64 // no longer live
}

// target maps a virtual peer onto an instrumented service of the same name,
// so a call to a service whose server span is missing meets the real node
// instead of a phantom one.
func (p *Pairer) target(peer *graph.Node) *graph.Node {
	if peer.Kind == graph.KindExternal {
		if k, ok := p.known[peer.Workload]; ok {
			return k
		}
	}
	return peer
}

// unknownPeer is the callee of a client span that names nothing.
var unknownPeer = graph.Node{Workload: "unknown-peer", Kind: graph.KindExternal}

// emit appends one observation: src->dst, timed and measured by lat (the
// server side when paired), status from either side.
func (p *Pairer) emit(src, dst *graph.Node, timing, lat, other *entry, rep graph.Reporter) {
	t := timing.start
	if p.now != 0 && (t > p.now+int64(p.cfg.MaxClockSkew) || t < p.now-int64(p.cfg.MaxClockSkew)) || t <= 0 {
		if p.now != 0 {
			t = p.now
		} else if t <= 0 {
			t = 1
		}
		p.stats.Skewed++
	}
	w := lat.weight
	if other != nil && other.weight > w {
		w = other.weight
	}
	n := uint64(math.Round(float64(w)))
	if n < 1 {
		n = 1
	}
	o := graph.Observation{
		Time:     time.Unix(0, t),
		Src:      *src,
		Dst:      *dst,
		Protocol: lat.proto,
		Requests: n,
		Reporter: rep,
		Signal:   graph.SignalTraces,
	}
	switch {
	case dst.Kind == graph.KindDatabase || dst.Kind == graph.KindQueue:
		o.Protocol = graph.ProtoTCP // database and broker protocols are TCP to the mesh
	case other != nil && lat.proto == graph.ProtoHTTP && other.proto != graph.ProtoHTTP:
		o.Protocol = other.proto
	}
	switch {
	case lat.flags&fBadTime == 0:
		o.LatencyMs = float64(lat.end-lat.start) / 1e6
	case other != nil && other.flags&fBadTime == 0:
		o.LatencyMs = float64(other.end-other.start) / 1e6
	default:
		o.Latency = noLatency
	}
	classify(&o, lat, other, n)
	p.out = append(p.out, o)
}

// classify marks o failed when either side says so: an ERROR status, an HTTP
// status >= 400 or a gRPC status other than OK.
func classify(o *graph.Observation, a, b *entry, n uint64) {
	code, grpc, isErr := a.http, a.grpc, a.status == StatusError
	if b != nil {
		if code == 0 {
			code = b.http
		}
		if grpc < 0 {
			grpc = b.grpc
		}
		isErr = isErr || b.status == StatusError
	}
	switch {
	case code >= 500:
		o.Errors[graph.Err5xx] = n
		o.ResponseCode = code
	case code >= 400:
		o.Errors[graph.Err4xx] = n
		o.ResponseCode = code
	case grpc > 0:
		o.Errors[graph.ErrGRPC] = n
		o.GRPCStatus = uint16(grpc)
	case isErr && b == nil && a.kind == KindClient:
		// A client that failed with no response code never got an answer.
		o.Errors[graph.ErrNoResponse] = n
	case isErr:
		o.Errors[graph.Err5xx] = n
	}
}

// VirtualNode names the uninstrumented peer of a client, producer or consumer
// span from its attributes: peer.service, server.address, db.system/db.namespace,
// messaging.system/destination, then the HTTP URL's host. Databases and
// queues get their own kinds; everything else is external.
func VirtualNode(pe *Peer) (graph.Node, bool) {
	kind := graph.KindExternal
	switch {
	case pe.DBSystem != "":
		kind = graph.KindDatabase
	case pe.MessagingSystem != "":
		kind = graph.KindQueue
	}
	var name string
	switch {
	case pe.Service != "":
		name = pe.Service
	case pe.Address != "":
		name = serviceShortName(pe.Address)
	case pe.DBSystem != "":
		name = pe.DBSystem
		if pe.DBNamespace != "" {
			name += "/" + pe.DBNamespace
		}
	case pe.MessagingSystem != "":
		name = pe.MessagingSystem
		if pe.MessagingDestination != "" {
			name += "/" + pe.MessagingDestination
		}
	case pe.HTTPHost != "":
		name = serviceShortName(pe.HTTPHost)
	default:
		return graph.Node{}, false
	}
	if kind == graph.KindExternal {
		kind = kindFromName(name)
	}
	return graph.Node{Workload: name, Kind: kind}, true
}

// Well-known database and broker names, for peers named only by
// peer.service or by the service name a driver's spans were recorded under.
var (
	dbNames    = []string{"mysql", "mariadb", "postgres", "redis", "mongo", "memcache", "cassandra", "elasticsearch", "opensearch", "sqlserver", "oracle", "sqlite", "dynamodb", "couchbase", "clickhouse", "etcd"}
	queueNames = []string{"kafka", "rabbitmq", "nats", "pulsar", "activemq", "sqs", "pubsub", "kinesis"}
)

func kindFromName(name string) graph.Kind {
	l := strings.ToLower(name)
	for _, n := range dbNames {
		if strings.Contains(l, n) {
			return graph.KindDatabase
		}
	}
	for _, n := range queueNames {
		if strings.Contains(l, n) {
			return graph.KindQueue
		}
	}
	return graph.KindExternal
}

// serviceShortName turns a cluster-local host into the service's name, so a
// call to reviews.bookinfo.svc.cluster.local can meet the instrumented reviews.
func serviceShortName(host string) string {
	if i := strings.IndexByte(host, '.'); i > 0 && (strings.Contains(host, ".svc.") || strings.HasSuffix(host, ".svc")) {
		return host[:i]
	}
	return host
}
