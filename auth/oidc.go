package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// errBadToken is what callers see for any invalid bearer token; the detail
// goes to the debug log and the failure counter, never to the client.
var errBadToken = errors.New("invalid or expired credentials")

const (
	maxJWTBytes  = 16 << 10
	maxJWKSBytes = 1 << 20
	// minRefetch limits JWKS refetches triggered by unknown key IDs, so a
	// client sending random kids cannot make us hammer the issuer.
	minRefetch = 30 * time.Second
)

// oidcVerifier checks RS256/ES256 JWTs against the issuer's JWKS.
type oidcVerifier struct {
	cfg    OIDC
	client *http.Client
	now    func() time.Time

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey // kid -> key
	fetched   time.Time
	lastTry   time.Time
	jwksURL   string
	fetchLock sync.Mutex // one fetch at a time
}

func newOIDCVerifier(cfg OIDC, client *http.Client, now func() time.Time) *oidcVerifier {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &oidcVerifier{cfg: cfg, client: client, now: now, jwksURL: cfg.JWKSURL}
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// verify checks signature and claims and returns the principal; the error
// says why (for logs and metrics: never the token itself).
func (v *oidcVerifier) verify(ctx context.Context, token string) (Principal, string, error) {
	if len(token) > maxJWTBytes {
		return Principal{}, "malformed", errors.New("token too long")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Principal{}, "malformed", errors.New("not a JWS compact token")
	}
	var hdr jwtHeader
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return Principal{}, "malformed", fmt.Errorf("header: %w", err)
	}
	if hdr.Alg != "RS256" && hdr.Alg != "ES256" {
		return Principal{}, "algorithm", fmt.Errorf("algorithm %q not accepted (RS256, ES256)", hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return Principal{}, "malformed", fmt.Errorf("signature encoding: %w", err)
	}
	key, err := v.key(ctx, hdr.Kid)
	if err != nil {
		return Principal{}, "key", err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	switch k := key.(type) {
	case *rsa.PublicKey:
		if hdr.Alg != "RS256" {
			return Principal{}, "algorithm", fmt.Errorf("key %q is RSA, token says %s", hdr.Kid, hdr.Alg)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig); err != nil {
			return Principal{}, "signature", errors.New("bad signature")
		}
	case *ecdsa.PublicKey:
		if hdr.Alg != "ES256" || k.Curve != elliptic.P256() {
			return Principal{}, "algorithm", fmt.Errorf("key %q is ECDSA %s, token says %s", hdr.Kid, k.Curve.Params().Name, hdr.Alg)
		}
		if len(sig) != 64 {
			return Principal{}, "signature", errors.New("bad ES256 signature length")
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		if !ecdsa.Verify(k, digest[:], r, s) {
			return Principal{}, "signature", errors.New("bad signature")
		}
	default:
		return Principal{}, "key", fmt.Errorf("key %q has an unsupported type", hdr.Kid)
	}
	var claims map[string]any
	if err := decodeSegment(parts[1], &claims); err != nil {
		return Principal{}, "malformed", fmt.Errorf("claims: %w", err)
	}
	if reason, err := v.checkClaims(claims); err != nil {
		return Principal{}, reason, err
	}
	return v.principal(claims)
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func numClaim(c map[string]any, name string) (time.Time, bool, error) {
	raw, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	f, ok := raw.(float64)
	if !ok {
		return time.Time{}, true, fmt.Errorf("claim %s is not a number", name)
	}
	return time.Unix(int64(f), 0), true, nil
}

func (v *oidcVerifier) checkClaims(c map[string]any) (string, error) {
	now := v.now()
	if iss, _ := c["iss"].(string); iss != v.cfg.Issuer {
		return "issuer", fmt.Errorf("issuer %q is not %q", iss, v.cfg.Issuer)
	}
	if !audienceHas(c["aud"], v.cfg.Audience) {
		return "audience", fmt.Errorf("audience does not include %q", v.cfg.Audience)
	}
	exp, ok, err := numClaim(c, "exp")
	if err != nil || !ok {
		return "expired", errors.New("no valid exp claim")
	}
	if now.After(exp.Add(v.cfg.Leeway)) {
		return "expired", fmt.Errorf("expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, err := numClaim(c, "nbf"); err != nil || (ok && now.Add(v.cfg.Leeway).Before(nbf)) {
		return "not_yet_valid", errors.New("not valid yet (nbf)")
	}
	if iat, ok, err := numClaim(c, "iat"); err != nil || (ok && now.Add(v.cfg.Leeway).Before(iat)) {
		return "not_yet_valid", errors.New("issued in the future (iat)")
	}
	return "", nil
}

func audienceHas(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if s, _ := x.(string); s == want {
				return true
			}
		}
	}
	return false
}

func (v *oidcVerifier) principal(c map[string]any) (Principal, string, error) {
	name := ""
	for _, k := range []string{v.cfg.UsernameClaim, "preferred_username", "email", "sub"} {
		if s, _ := c[k].(string); k != "" && s != "" {
			name = s
			break
		}
	}
	if name == "" {
		return Principal{}, "claims", errors.New("no username claim")
	}
	if len(name) > 256 {
		name = name[:256]
	}
	role := v.cfg.DefaultRole
	var groups []string
	switch g := c[v.cfg.RolesClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	for _, g := range groups {
		if r, ok := v.cfg.RoleMapping[g]; ok && r > role {
			role = r
		}
	}
	if role == RolePublic {
		return Principal{}, "no_role", fmt.Errorf("user %q has no mapped role", name)
	}
	return Principal{Name: name, Role: role, Method: "oidc"}, "", nil
}

// key returns the public key for kid, fetching the JWKS when the cache is
// stale or the kid unknown (at most once per minRefetch for unknown kids).
func (v *oidcVerifier) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	v.mu.Lock()
	k, ok := v.keys[kid]
	fresh := v.keys != nil && v.now().Sub(v.fetched) < v.cfg.RefreshInterval
	mayRetry := v.now().Sub(v.lastTry) >= minRefetch
	v.mu.Unlock()
	if ok && fresh {
		return k, nil
	}
	if !fresh || mayRetry {
		if err := v.refresh(ctx); err != nil {
			if ok {
				return k, nil // the issuer is down: keep using a key we know
			}
			return nil, err
		}
		v.mu.Lock()
		k, ok = v.keys[kid]
		v.mu.Unlock()
	}
	if !ok {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	return k, nil
}

func (v *oidcVerifier) refresh(ctx context.Context) error {
	v.fetchLock.Lock()
	defer v.fetchLock.Unlock()
	v.mu.Lock()
	v.lastTry = v.now()
	url := v.jwksURL
	v.mu.Unlock()
	if url == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := v.getJSON(ctx, strings.TrimSuffix(v.cfg.Issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return fmt.Errorf("oidc discovery: %w", err)
		}
		if doc.Issuer != v.cfg.Issuer || doc.JWKSURI == "" {
			return fmt.Errorf("oidc discovery: issuer %q / jwks_uri %q do not match the configured issuer", doc.Issuer, doc.JWKSURI)
		}
		url = doc.JWKSURI
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := v.getJSON(ctx, url, &set); err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", url, err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, j := range set.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		if k, err := j.publicKey(); err == nil {
			keys[j.Kid] = k
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("JWKS %s has no usable RSA or P-256 signing key", url)
	}
	v.mu.Lock()
	v.keys, v.fetched, v.jwksURL = keys, v.now(), url
	v.mu.Unlock()
	return nil
}

func (v *oidcVerifier) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(out)
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (j jwk) publicKey() (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding.DecodeString
	switch j.Kty {
	case "RSA":
		if j.Alg != "" && j.Alg != "RS256" {
			return nil, fmt.Errorf("alg %s", j.Alg)
		}
		n, err1 := b64(j.N)
		e, err2 := b64(j.E)
		if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA key")
		}
		pk := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pk.N.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		return pk, nil
	case "EC":
		if j.Crv != "P-256" || (j.Alg != "" && j.Alg != "ES256") {
			return nil, fmt.Errorf("curve %s", j.Crv)
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad EC key")
		}
		// Uncompressed point form, validated as on-curve by ecdh-backed parsing.
		pt := append(append([]byte{4}, x...), y...)
		pk, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return nil, err
		}
		return pk, nil
	}
	return nil, fmt.Errorf("key type %s", j.Kty)
}
