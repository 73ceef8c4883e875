package traces

import (
	"crypto/tls"
	"net"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Hardening options, set by the app from the receivers' section (TLS,
// per-client rate limits, concurrency bounds shared with other components).

// WithTLS serves every trace listener over TLS (mTLS when cfg requires
// client certificates).
func WithTLS(cfg *tls.Config) Option {
	return func(r *Receiver) { r.tls = cfg }
}

// WithHTTPMiddleware wraps each HTTP receiver's handler (name is RecvOTLPHTTP, ...).
func WithHTTPMiddleware(mw func(name string, h http.Handler) http.Handler) Option {
	return func(r *Receiver) { r.httpMW = mw }
}

// WithGRPCInterceptor adds a unary interceptor to each gRPC receiver (name is RecvOTLPGRPC, ...).
func WithGRPCInterceptor(ic func(name string) grpc.UnaryServerInterceptor) Option {
	return func(r *Receiver) { r.grpcIC = ic }
}

func (r *Receiver) wrapHTTP(name string, h http.Handler) http.Handler {
	if r.httpMW == nil {
		return h
	}
	return r.httpMW(name, h)
}

func (r *Receiver) wrapListener(l net.Listener) net.Listener {
	if r.tls == nil {
		return l
	}
	return tls.NewListener(l, r.tls)
}

func (r *Receiver) grpcOptions(name string) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if r.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(r.tls))) // sets ALPN h2
	}
	if r.grpcIC != nil {
		opts = append(opts, grpc.UnaryInterceptor(r.grpcIC(name)))
	}
	return opts
}
