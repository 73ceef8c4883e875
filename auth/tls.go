package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS is a listener's TLS section. With no cert file the listener is plain.
type TLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	// ClientCAFile turns on client certificates (mTLS): clients must present
	// one signed by these CAs.
	ClientCAFile string `yaml:"clientCAFile"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"minVersion"`
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Validate reports problems relative to the section.
func (t TLS) Validate() []string {
	var p []string
	if (t.CertFile == "") != (t.KeyFile == "") {
		p = append(p, "certFile, keyFile: set both or neither")
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		p = append(p, "clientCAFile: needs certFile and keyFile")
	}
	switch t.MinVersion {
	case "", "1.2", "1.3":
	default:
		p = append(p, fmt.Sprintf("minVersion: %q is not 1.2 or 1.3", t.MinVersion))
	}
	return p
}

// ServerConfig loads the files into a *tls.Config; nil when TLS is off.
// The certificate is re-read when its file changes (rotation without restart).
func (t TLS) ServerConfig() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	if probs := t.Validate(); len(probs) > 0 {
		return nil, errors.New(probs[0])
	}
	r := &certReloader{certFile: t.CertFile, keyFile: t.KeyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get}
	if t.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s: no PEM certificate", t.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
