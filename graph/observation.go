package graph

import "time"

// ErrorClass splits failed requests by what went wrong.
type ErrorClass uint8

const (
	Err5xx ErrorClass = iota
	Err4xx
	ErrGRPC           // gRPC status other than OK on an HTTP 200
	ErrNoResponse     // reset, timeout or no response (HTTP code 0 / response flags)
	ErrConnectFailure // upstream connect failure (UF, URX, UH)
	NumErrorClasses
)

var errorClassNames = [NumErrorClasses]string{"5xx", "4xx", "grpc", "noResponse", "connectFailure"}

func (c ErrorClass) String() string {
	if c < NumErrorClasses {
		return errorClassNames[c]
	}
	return "unknown"
}

// ErrorCounts holds failed requests per class. A failed request is counted in one class.
type ErrorCounts [NumErrorClasses]uint64

// Total is the number of failed requests of any class.
func (e *ErrorCounts) Total() uint64 {
	var t uint64
	for _, v := range e {
		t += v
	}
	return t
}

// Reporter says which vantage point reported an observation.
type Reporter uint8

const (
	ReporterUnknown     Reporter = iota
	ReporterSource               // the caller's proxy (Istio reporter="source", Linkerd outbound)
	ReporterDestination          // the callee's proxy
	ReporterWaypoint             // an Istio ambient waypoint (L7)
	ReporterZtunnel              // Istio ambient ztunnel (L4 only)
	ReporterClientSpan           // a CLIENT/PRODUCER span
	ReporterServerSpan           // a SERVER/CONSUMER span or a paired call
	ReporterProxy                // plain Envoy upstream stats
	numReporters
)

var reporterNames = [numReporters]string{"unknown", "source", "destination", "waypoint", "ztunnel", "clientSpan", "serverSpan", "proxy"}

func (r Reporter) String() string {
	if r < numReporters {
		return reporterNames[r]
	}
	return "unknown"
}

// Signal is the kind of telemetry an observation came from.
type Signal uint8

const (
	SignalMetrics Signal = 1 << iota
	SignalTraces
)

// Names lists the signals set in s.
func (s Signal) Names() []string {
	var out []string
	if s&SignalMetrics != 0 {
		out = append(out, "metrics")
	}
	if s&SignalTraces != 0 {
		out = append(out, "traces")
	}
	return out
}

// Security is the transport security of the observed traffic.
type Security uint8

const (
	SecurityUnknown Security = iota
	SecurityPlaintext
	SecurityMTLS
)

// Observation is the one normalised input of the graph: a call (or a batch of
// calls) from Src to Dst. Collectors of every dialect produce these.
type Observation struct {
	Time     time.Time
	Src, Dst Node
	Protocol Protocol

	Requests uint64
	Errors   ErrorCounts

	// Latency: either one value (ms) that stands for every request of the
	// observation, or a pre-aggregated distribution. Sketch wins when set.
	LatencyMs float64
	Latency   *Sketch

	RequestBytes, ResponseBytes uint64
	ConnOpened, ConnClosed      uint64 // TCP connections
	Security                    Security

	// Evidence.
	ResponseCode  uint16 // HTTP status of failed requests (0 = none/unknown)
	GRPCStatus    uint16 // gRPC status of failed requests
	ResponseFlags Flags

	SrcPrincipal, DstPrincipal string

	Reporter Reporter
	Signal   Signal
	L4Only   bool // only L4 telemetry is available for this traffic (ambient ztunnel)
}
