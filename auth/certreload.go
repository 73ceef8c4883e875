package auth

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certReloader serves a key pair and reloads it when the certificate file's
// modification time changes (checked at most once a second).
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mtime   time.Time
	checked time.Time
}

func (r *certReloader) load() error {
	st, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// LoadX509KeyPair's errors name the files, never the key material.
		return fmt.Errorf("TLS key pair %s / %s: %w", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.cert, r.mtime, r.checked = &c, st.ModTime(), time.Now()
	r.mu.Unlock()
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	cert, due := r.cert, time.Since(r.checked) > time.Second
	if due {
		r.checked = time.Now()
	}
	mtime := r.mtime
	r.mu.Unlock()
	if due {
		if st, err := os.Stat(r.certFile); err == nil && !st.ModTime().Equal(mtime) {
			_ = r.load() // a half-written pair fails to load: keep serving the old one
			r.mu.Lock()
			cert = r.cert
			r.mu.Unlock()
		}
	}
	return cert, nil
}
