// Package tlstest makes a throwaway CA, a loopback server certificate and a
// client certificate for tests of TLS and mTLS listeners.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Files are PEM files in a test's temp dir.
type Files struct {
	CAFile, CertFile, KeyFile, ClientCertFile, ClientKeyFile string
	// Pool trusts the CA; ClientCert is the client key pair.
	Pool       *x509.CertPool
	ClientCert tls.Certificate
}

// ClientConfig trusts the CA; withCert adds the client certificate.
func (f Files) ClientConfig(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: f.Pool, ServerName: "127.0.0.1"}
	if withCert {
		c.Certificates = []tls.Certificate{f.ClientCert}
	}
	return c
}

// New writes a CA, a server certificate for 127.0.0.1/localhost and a client certificate.
func New(tb testing.TB) Files {
	tb.Helper()
	dir := tb.TempDir()
	caKey := key(tb)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "meshlens test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	f := Files{Pool: x509.NewCertPool()}
	f.Pool.AddCert(ca)
	f.CAFile = write(tb, dir, "ca.pem", "CERTIFICATE", caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key(tb)
		t := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, t, ca, &k.PublicKey, caKey)
		if err != nil {
			tb.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := leaf(2, "meshlens", x509.ExtKeyUsageServerAuth)
	f.CertFile = write(tb, dir, "server.pem", "CERTIFICATE", sDER)
	f.KeyFile = write(tb, dir, "server-key.pem", "EC PRIVATE KEY", ecDER(tb, sKey))
	cDER, cKey := leaf(3, "otel-collector", x509.ExtKeyUsageClientAuth)
	f.ClientCertFile = write(tb, dir, "client.pem", "CERTIFICATE", cDER)
	f.ClientKeyFile = write(tb, dir, "client-key.pem", "EC PRIVATE KEY", ecDER(tb, cKey))
	f.ClientCert, err = tls.LoadX509KeyPair(f.ClientCertFile, f.ClientKeyFile)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func key(tb testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func ecDER(tb testing.TB, k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func write(tb testing.TB, dir, name, typ string, der []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
